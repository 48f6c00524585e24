"""Provider-encrypted columns at ingest, the key registry, and other job kinds facing encrypted columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from flask import Flask

from crypto import ledger as ledger_crypto
from crypto import paillier
from crypto.paillier import PublicKey
from sandbox.cli import main as sandbox_cli
from sandbox.storage import get_store_of
from tests.conftest import World, auth
from tests.sandbox.hekit import (
    HE_POLICY,
    CustodianFixture,
    domain_public_der,
    encrypted_pums,
    he_grant,
    he_meta,
    pums_frame,
    quick_encrypt,
    start_custodian,
    upload_bytes,
)
from tests.sandbox.jobkit import job_json, run_worker, submit


def refused(response: Any, column: str = "income") -> list[dict[str, str]]:
    assert response.status_code == 400, response.json
    problems = response.json["error"]["details"]["problems"]
    assert {p["column"] for p in problems} == {column}, problems
    return list(problems)


def nothing_stored(world: World, app: Flask) -> None:
    assert world.client.get("/api/v1/datasets", headers=auth(world.steward)).json["items"] == []
    assert not [p for p in Path(get_store_of(app).root).rglob("*") if p.is_file()]


def test_an_encrypted_column_is_accepted_and_declared(world: World, pums_he: dict[str, Any], custodian: CustodianFixture) -> None:
    assert pums_he["columns"]["income"] == {
        "role": "sensitive",
        "type": "paillier",
        "paillier": {"key": custodian.public.fingerprint, "scale": 0},
        "bounds": None,
        "domain": None,
        "description": "",
    }
    assert pums_he["row_count"] == 1000


def test_an_unregistered_key_is_refused_naming_the_column(world: World, app: Flask, custodian: CustodianFixture) -> None:
    foreign = paillier.generate(2048).public
    problems = refused(upload_bytes(world, he_meta(foreign), encrypted_pums(foreign)))
    assert "not registered" in problems[0]["problem"]
    nothing_stored(world, app)


def test_tampered_ciphertexts_are_refused_with_counts_only(world: World, app: Flask, custodian: CustodianFixture) -> None:
    key = custodian.public
    frame = pums_frame()
    good = paillier.from_arrow(quick_encrypt(key, frame["income"].tolist(), 0))
    width = key.ciphertext_bytes
    raw: list[bytes | None] = [paillier.to_bytes(key, c) if c is not None else None for c in good]
    raw[0] = b"\xff" * width  # >= n²
    raw[1] = bytes(width)  # zero
    raw[2] = raw[2][:-1] if raw[2] else None  # truncated
    raw[3] = paillier.to_bytes(key, key.n * 5)  # shares a factor with n
    problems = refused(upload_bytes(world, he_meta(key), encrypted_pums(key, frame, pa.array(raw, pa.binary()))))
    text = " ".join(p["problem"] for p in problems)
    assert "1 ciphertexts are not" in text
    assert "2 ciphertexts are outside" in text
    assert "1 ciphertexts are not valid" in text
    assert str(good[4]) not in json.dumps(problems)
    nothing_stored(world, app)


def test_ciphertexts_of_a_larger_foreign_key_are_refused(world: World, app: Flask, custodian: CustodianFixture) -> None:
    foreign = paillier.generate(3072).public
    frame = pums_frame().head(50)
    data = encrypted_pums(custodian.public, frame, quick_encrypt(foreign, frame["income"].tolist(), 0))
    problems = refused(upload_bytes(world, he_meta(custodian.public), data))  # claims the registered key
    assert "50 ciphertexts are not 512 bytes long" in problems[0]["problem"]
    nothing_stored(world, app)


def test_an_encrypted_column_in_csv_is_refused(world: World, custodian: CustodianFixture) -> None:
    csv = pums_frame().head(20).to_csv(index=False).encode()
    problems = refused(upload_bytes(world, he_meta(custodian.public), csv, "pums.csv"))
    assert "binary" in problems[0]["problem"]


def test_he_keys_are_listed_to_every_role(world: World, custodian: CustodianFixture) -> None:
    for role in ("admin", "steward", "analyst", "auditor"):
        response = world.client.get("/api/v1/he/keys", headers=auth(world.token(role)))
        assert response.status_code == 200, response.json
        (item,) = response.json["items"]
        assert PublicKey.from_dict(item) == custodian.public
        assert item["bits"] == 2048


@pytest.mark.parametrize(
    "sql",
    ["SELECT race, SUM(income) AS total FROM pums_he GROUP BY race", "SELECT race, COUNT(income) AS n FROM pums_he GROUP BY race"],
    ids=["sum", "count"],
)
def test_query_jobs_refuse_encrypted_columns(world: World, pums_he: dict[str, Any], sql: str) -> None:
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "job_kinds": ["query", "he"]}, kinds=["query", "he"])
    response = submit(world, grant_id, sql)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"] == {"rule": "encrypted_column", "column": "pums_he.income"}


def test_a_query_on_a_table_with_an_encrypted_column_still_counts(world: World, app: Flask, pums_he: dict[str, Any]) -> None:
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "job_kinds": ["query", "he"]}, kinds=["query", "he"])
    sql = "SELECT race, COUNT(*) AS n FROM pums_he GROUP BY race ORDER BY race"
    response = submit(world, grant_id, sql)
    assert response.status_code == 202, response.json
    assert run_worker(app) == 1
    assert job_json(world, response.json["id"])["status"] == "released"


def test_stats_jobs_refuse_encrypted_columns(world: World, pums_he: dict[str, Any]) -> None:
    grant_id = he_grant(world, pums_he["id"], {**HE_POLICY, "job_kinds": ["stats", "he"]}, kinds=["stats", "he"])
    spec = {"op": "describe", "dataset": "pums_he", "columns": ["income"]}
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "stats", "spec": spec})
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "encrypted_column"


def test_cli_exports_the_domain_key_and_registers_the_custodian_key(app: Flask, tmp_path: Path) -> None:
    env = {"SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    out = tmp_path / "custodian" / "domain.pub"
    exported = CliRunner(env=env).invoke(sandbox_cli, ["keys", "export-public", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert ledger_crypto.public_from_pem(out.read_text()) == domain_public_der(app)
    custodian = start_custodian(app, tmp_path / "custodian", register=False)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(custodian.public.as_dict()))
    for expected in ("registered", "already registered"):
        result = CliRunner(env=env).invoke(sandbox_cli, ["he", "register-key", "--file", str(key_file)])
        assert result.exit_code == 0, result.output
        assert f"{expected}: fingerprint {custodian.public.fingerprint}" in result.output
    assert CliRunner(env=env).invoke(sandbox_cli, ["he", "register-key"]).exit_code != 0
