"""Plaintext never touches disk, and key rotation re-wraps keys without re-encrypting data."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from urllib3 import encode_multipart_formdata
from werkzeug import formparser

from sandbox.cli import main
from sandbox.demo.seed import TEACHER_META
from sandbox.models import DatasetVersion
from tests.conftest import World, auth
from tests.datafiles import DEMO_DATA


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Iterator[Path]:
    """Point the process's temporary folder at a folder the test scans too."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = saved


def _big_teacher_csv(copies: int) -> tuple[bytes, list[str]]:
    """The teacher survey repeated (new ids) to exceed the size at which Werkzeug would spool to disk."""
    rows = list(csv.DictReader(io.StringIO((DEMO_DATA / "teacher_survey.csv").read_text())))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for copy in range(copies):
        for row in rows:
            writer.writerow({**row, "teacher_id": int(row["teacher_id"]) + copy * len(rows)})
    names = sorted({row["name"] for row in rows if len(row["name"]) > 10})[:50]
    return out.getvalue().encode(), names


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def no_spooling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any attempt by the request parser to spool an upload into a temporary file."""
    calls: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append("temporary file")
        return io.BytesIO()

    monkeypatch.setattr(formparser, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    return calls


@pytest.mark.sqlite_only
def test_no_plaintext_anywhere_on_disk(world: World, app: Flask, scratch_tmp: Path, no_spooling: list[str]) -> None:
    content, names = _big_teacher_csv(3)
    assert len(content) > 600_000  # above Werkzeug's 500 KB in-memory limit for uploads
    body, content_type = encode_multipart_formdata({"meta": json.dumps(TEACHER_META), "file": ("teachers.csv", content, "text/csv")})
    response = world.client.post("/api/v1/datasets", headers=auth(world.steward), data=body, content_type=content_type)
    assert response.status_code == 201, response.json
    assert no_spooling == []
    files = _files(Path(app.config["INSTANCE_PATH"]), scratch_tmp)
    assert any(p.suffix == ".sbxe" for p in files)
    header = content.split(b"\n", 1)[0]
    needles = [n.encode() for n in names] + [header, b"PAR1"]
    for path in files:
        blob = path.read_bytes()
        for needle in needles:
            assert needle not in blob, f"{needle[:20]!r} found in {path.name}"


def test_every_version_has_its_own_wrapped_key(app: Flask, pums: dict[str, Any], world: World) -> None:
    world.client.post(
        f"/api/v1/datasets/{pums['id']}/versions",
        headers=auth(world.steward),
        data={"file": (io.BytesIO((DEMO_DATA / "pums.csv").read_bytes()), "pums.csv")},
        content_type="multipart/form-data",
    )
    with app.app_context():
        versions = app.extensions["sandbox.datasets"].get(pums["id"]).versions
    assert len(versions) == 2
    assert versions[0].wrapped_key != versions[1].wrapped_key


def _cli(app: Flask, *args: str) -> Any:
    env = {"SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_key_rotation_rewraps_and_old_data_still_reads(app: Flask, pums: dict[str, Any]) -> None:
    keyfile = Path(app.config["MASTER_KEY_FILE"])
    old_ring = json.loads(keyfile.read_text())
    with app.app_context():
        service = app.extensions["sandbox.datasets"]
        before: DatasetVersion = service.get(pums["id"]).current
        stored = Path(app.config["INSTANCE_PATH"]) / "data" / before.path
        ciphertext = stored.read_bytes()
    result = _cli(app, "keys", "rotate")
    assert result.exit_code == 0, result.output
    new_ring = json.loads(keyfile.read_text())
    assert new_ring["current"] != old_ring["current"]
    assert list(new_ring["keys"]) == [new_ring["current"]]  # the old master key is gone
    assert stored.read_bytes() == ciphertext  # nothing re-encrypted
    with app.app_context():
        after = service.get(pums["id"]).current
        assert after.master_key_id == new_ring["current"]
        assert after.wrapped_key != before.wrapped_key
        assert service.read(after).num_rows == 1000
    verify = _cli(app, "audit", "verify")
    assert verify.exit_code == 0
    assert json.loads(verify.output)["ok"] is True


def test_wrapped_key_cannot_be_moved_to_another_version(app: Flask, pums: dict[str, Any], world: World) -> None:
    from core.errors import IntegrityError

    response = world.upload(world.steward, TEACHER_META, DEMO_DATA / "teacher_survey.csv")
    assert response.status_code == 201
    with app.app_context():
        service = app.extensions["sandbox.datasets"]
        pums_version = service.get(pums["id"]).current
        teacher_version = service.get(response.json["id"]).current
        teacher_version.wrapped_key = pums_version.wrapped_key
        with pytest.raises(IntegrityError):
            service.read(teacher_version)
