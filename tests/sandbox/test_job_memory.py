"""A job past its memory limit fails with a fixed reason, and its decrypted data never reaches disk.

DuckDB offloads what outgrows its memory limit to ``./.tmp`` for in-memory databases: the worker's
engine disables that. The test runs a real job through a worker with a small limit, from a
working directory and a temporary folder it then scans, together with the instance folder, for any
new file and for the dataset's marker values.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask

from tests.conftest import World, request_grant
from tests.sandbox.hekit import upload_bytes
from tests.sandbox.jobkit import approve, job_json, run_worker, submit

MARKER = "PLAINTEXT-MARKER-"
ROWS = 400_000
META: dict[str, Any] = {
    "name": "people",
    "title": "People with unique names",
    "level": "重要",
    "privacy_unit": "pid",
    "columns": {
        "pid": {"role": "identifier", "type": "int"},
        "name": {"role": "quasi_identifier", "type": "string"},
        "income": {"role": "sensitive", "type": "int", "bounds": [0, 1_000_000]},
    },
}
POLICY = {"columns": {"people": {"name": "dimension", "income": "measure"}}, "aggregates": ["count", "sum"], "job_kinds": ["query"]}


def _people() -> bytes:
    table = pa.table(
        {
            "pid": pa.array(range(ROWS)),
            "name": pa.array([f"{MARKER}{i:09d}" for i in range(ROWS)]),
            "income": pa.array([i % 100_000 for i in range(ROWS)]),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A working directory and a temporary folder of the test's own, for the worker to run in."""
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(scratch))
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)
    yield cwd, scratch
    tempfile.tempdir = saved


def _snapshot(*roots: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for root in roots for p in root.rglob("*")}


@pytest.mark.sqlite_only
def test_a_job_past_its_memory_limit_fails_cleanly_and_spills_nothing(app: Flask, world: World, folders: tuple[Path, Path]) -> None:
    cwd, scratch = folders
    instance = Path(app.config["INSTANCE_PATH"])
    response = upload_bytes(world, META, _people(), "people.parquet")
    assert response.status_code == 201, response.json
    grant = request_grant(world, [response.json["id"]]).json["id"]
    approve(world, grant, POLICY)
    job = submit(world, grant, "SELECT name, COUNT(*) AS n, SUM(income) AS total FROM people GROUP BY name")
    assert job.status_code == 202, job.json
    app.config["JOB_MEMORY_MB"] = 24
    before = _snapshot(instance, cwd, scratch)

    assert run_worker(app) == 1

    finished = job_json(world, job.json["id"])  # the analyst reads it as any failure (sandbox/api/analyst_view.py)
    assert (finished["status"], finished["reason"]) == ("failed", "the job failed inside the sandbox; the operator has the details")
    assert job_json(world, job.json["id"], world.auditor)["reason"] == "the job exceeded its memory limit"
    after = _snapshot(instance, cwd, scratch)
    new = sorted(str(p) for p in after if p not in before)
    assert [p for p in new if not p.startswith(str(instance))] == []  # nothing in the working directory or $TMPDIR
    for path in after:
        if path.is_file() and (path not in before or after[path] != before[path]):
            assert MARKER.encode() not in path.read_bytes(), path
