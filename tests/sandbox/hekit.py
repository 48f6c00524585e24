"""Helpers of the he tests: an in-process key custodian wired to the app, PUMS with income encrypted, he jobs.

``quick_encrypt`` is the providers' own bulk encryption (``paillier_bulk.encrypt_column``) run in
the test's process, without a pool.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from crypto import ledger as ledger_crypto
from crypto import paillier_bulk
from crypto.paillier import PublicKey
from custodian.app import create_app as create_custodian_app
from custodian.config import Settings
from custodian.vault import Vault
from sandbox import keys
from sandbox.db import get_db_of
from sandbox.runtime.custodian import Custodian
from sandbox.service import he_keys
from tests.conftest import PUMS_META, World, auth, data_file

CUSTODIAN_URL = "http://custodian.test"
HE_POLICY: dict[str, Any] = {
    "columns": {"pums_he": {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "income": "measure"}},
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["he"],
}
RACE_SPEC: dict[str, Any] = {
    "op": "aggregate",
    "dataset": "pums_he",
    "group_by": ["race"],
    "aggregates": [
        {"fn": "count", "name": "n"},
        {"fn": "sum", "column": "income", "name": "total"},
        {"fn": "avg", "column": "income", "name": "mean_income"},
    ],
}


def quick_encrypt(public: PublicKey, values: Sequence[float | int | None], scale: int) -> pa.Array:
    """The provider's own bulk encryption, in this process (no pool: tests stay light)."""
    return paillier_bulk.encrypt_column(public, values, scale, processes=1)


@dataclass
class Sent:
    """What the worker sent to the custodian, request by request."""

    bodies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CustodianFixture:
    settings: Settings
    public: PublicKey
    client: FlaskClient
    sent: Sent

    def log(self) -> list[dict[str, Any]]:
        if not self.settings.log_file.exists():
            return []
        return [json.loads(line) for line in self.settings.log_file.read_text().splitlines()]


def flask_transport(client: FlaskClient, sent: Sent) -> Any:
    def send(url: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
        sent.bodies.append(body)
        response = client.post(urlsplit(url).path, json=body)
        return response.status_code, response.get_json()

    return send


def domain_public_der(app: Flask) -> bytes:
    with get_db_of(app).sessions() as session:
        return keys.signing_key(session, keys.get_keys_of(app))[1]


def start_custodian(app: Flask, directory: Path, *, register: bool = True, max_age: int = 300) -> CustodianFixture:
    """A custodian in ``directory`` that knows the app's domain key; the app's workers reach it in-process."""
    settings = Settings(directory=directory, domain_key_file=directory / "domain.pub", max_age_seconds=max_age)
    public, _ = Vault(settings).init(2048)
    settings.domain_key_file.write_text(ledger_crypto.public_to_pem(domain_public_der(app)))
    if register:
        with get_db_of(app).writing() as session:
            he_keys.register(session, app.extensions["sandbox.ledger"], "system:test", public, CUSTODIAN_URL)
    client = create_custodian_app(settings).test_client()
    sent = Sent()
    app.extensions["sandbox.custodian"] = Custodian(CUSTODIAN_URL, transport=flask_transport(client, sent))
    return CustodianFixture(settings, public, client, sent)


def pums_frame() -> pd.DataFrame:
    return pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))


def he_meta(public: PublicKey, scale: int = 0, name: str = "pums_he") -> dict[str, Any]:
    meta = copy.deepcopy(PUMS_META) | {"name": name, "title": "PUMS, income encrypted by its provider"}
    meta["columns"]["income"] = {"role": "sensitive", "type": "paillier", "paillier": {"key": public.fingerprint, "scale": scale}}
    return meta


def encrypted_pums(public: PublicKey, frame: pd.DataFrame | None = None, income: pa.Array | None = None) -> bytes:
    """PUMS as Parquet with income as ciphertexts (``quick_encrypt`` unless ``income`` is given)."""
    frame = pums_frame() if frame is None else frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    column = income if income is not None else quick_encrypt(public, frame["income"].tolist(), 0)
    table = table.set_column(table.schema.get_field_index("income"), "income", column)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def upload_bytes(world: World, meta: dict[str, Any], data: bytes, filename: str = "pums_he.parquet") -> Any:
    """Upload from memory. The multipart body is built here, so that the test client's request reads
    it from memory too (a large form would otherwise be spooled to a temporary file left to the GC)."""
    fields = MultiDict({"meta": json.dumps(meta), "file": FileStorage(io.BytesIO(data), filename, "file")})
    boundary, body = encode_multipart(fields)
    return world.client.post(
        "/api/v1/datasets", headers=auth(world.steward), data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def he_grant(world: World, dataset_id: str, policy: dict[str, Any] | None = None, kinds: list[str] | None = None) -> str:
    requested = {"job_kinds": kinds or ["he"]}
    body = {"dataset_ids": [dataset_id], "scenario": "Income totals by group for a market study", "requested": requested}
    response = world.client.post("/api/v1/grants", headers=auth(world.analyst), json=body)
    assert response.status_code == 201, response.json
    grant_id = str(response.json["id"])
    approval = {"policy": policy or HE_POLICY, "expires_at": "2099-01-01T00:00:00Z"}
    response = world.client.post(f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json=approval)
    assert response.status_code == 200, response.json
    return grant_id


def submit_he(world: World, grant_id: str, spec: dict[str, Any] | None = None) -> Any:
    body = {"grant_id": grant_id, "kind": "he", "spec": spec or RACE_SPEC}
    return world.client.post("/api/v1/jobs", headers=auth(world.analyst), json=body)
