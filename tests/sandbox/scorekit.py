"""Helpers of the scoring tests: a person table with ID-number-like identifiers, scoring grants, consents, a client in process.

``persons`` is the first 300 rows of PUMS_pid (shared data) with the person id written as an
identifier string (``ID000001``: text that appears nowhere else, so a test can look for it in the
ledger) and a float column ``income_k`` (income in thousands) for fixed-point float features.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Flask
from flask.testing import FlaskClient

from crypto import paillier
from crypto.paillier import KeyPair
from sandbox.app import instance_of
from sandbox.client import ApiError, Client, scoring
from sandbox.runtime.worker import Worker
from tests.conftest import World, auth, data_file

API = "/api/v1"
ROWS = 300

PERSONS_META: dict[str, Any] = {
    "name": "persons",
    "title": "Persons with ID numbers (PUMS sample)",
    "level": "重要",
    "privacy_unit": "person_id",
    "columns": {
        "person_id": {"role": "identifier", "type": "string"},
        "age": {"role": "quasi_identifier", "type": "int", "bounds": [0, 100]},
        "educ": {"role": "quasi_identifier", "type": "int", "domain": list(range(1, 17))},
        "income": {"role": "sensitive", "type": "int", "bounds": [0, 500_000]},
        "income_k": {"role": "sensitive", "type": "float", "bounds": [0, 500]},
        "married": {"role": "attribute", "type": "int", "domain": [0, 1]},
    },
}
LIMITS: dict[str, int] = {"max_entities_per_job": 40, "max_jobs_per_entity": 2, "period_days": 30}


def person(pid: int) -> str:
    return f"ID{pid:06d}"


def persons_frame() -> pd.DataFrame:
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).head(ROWS)
    income = pums["income"].astype(int)
    return pd.DataFrame(
        {
            "person_id": [person(int(p)) for p in pums["pid"]],
            "age": pums["age"].astype(int),
            "educ": pums["educ"].astype(int),
            "income": income,
            "income_k": income / 1000,
            "married": pums["married"].astype(int),
        }
    )


def upload_persons(world: World, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "persons.csv"
    persons_frame().to_csv(path, index=False)
    response = world.upload(world.steward, PERSONS_META, path)
    assert response.status_code == 201, response.json
    return dict(response.json)


def score_policy(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "columns": {"persons": {"age": "measure", "income": "measure", "income_k": "measure", "educ": "dimension"}},
        "aggregates": ["count"],
        "job_kinds": ["he"],
        "he": {"score": LIMITS},
    }
    return policy | changes


def score_grant(world: World, dataset_id: str, policy: dict[str, Any] | None = None) -> str:
    response = world.client.post(
        f"{API}/grants",
        headers=auth(world.analyst),
        json={"dataset_ids": [dataset_id], "scenario": "Credit scoring of consenting loan applicants", "requested": {"job_kinds": ["he"]}},
    )
    assert response.status_code == 201, response.json
    grant_id = str(response.json["id"])
    response = world.client.post(
        f"{API}/grants/{grant_id}/approve",
        headers=auth(world.steward),
        json={"policy": policy or score_policy(), "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.json
    return grant_id


def register(world: World, grant_id: str, entities: list[str], days: float = 30, token: str | None = None) -> Any:
    valid_until = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    return world.client.post(
        f"{API}/grants/{grant_id}/consents", headers=auth(token or world.steward), json={"entities": entities, "valid_until": valid_until}
    )


def revoke(world: World, grant_id: str, entities: list[str], token: str | None = None) -> Any:
    return world.client.post(f"{API}/grants/{grant_id}/consents/revoke", headers=auth(token or world.steward), json={"entities": entities})


def score_spec(
    key: KeyPair,
    entities: list[str],
    weights: dict[str, Any] | None = None,
    intercept: float = -1,
    scale: int = 6,
    feature_scale: int | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A scoring spec made by the client's own code (``sandbox.client.scoring.spec``), with ``changes`` on top."""
    return (
        scoring.spec(key.public, "persons", weights or {"age": 0.5, "income": 0.00001}, intercept, entities, scale, feature_scale) | changes
    )


def submit_score(world: World, grant_id: str, spec: dict[str, Any], token: str | None = None) -> Any:
    return world.client.post(f"{API}/jobs", headers=auth(token or world.analyst), json={"grant_id": grant_id, "kind": "he", "spec": spec})


def decrypted(world: World, job_id: str, key: KeyPair) -> dict[str, Any]:
    """The released result with each score decrypted (``paillier.decode``: exact decimals)."""
    response = world.client.get(f"{API}/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    result = dict(response.json)
    scale = result["summary"]["scale"]
    result["scores"] = {
        row["entity"]: paillier.decode(paillier.decrypt(key.private, int(row["score"])), scale, key.public) for row in result["rows"]
    }
    return result


class InProcess(Client):
    """The Python client over the Flask test client; a worker runs whenever a job is polled."""

    def __init__(self, app: Flask, client: FlaskClient, token: str) -> None:
        super().__init__("http://in-process", token)
        self.app, self.flask, self.token = app, client, token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and path.startswith("/jobs/") and path.count("/") == 2:
            Worker(instance_of(self.app)).run(once=True)
        response = self.flask.open(
            API + path, method=method, headers=auth(self.token), json=kwargs.get("json"), query_string=kwargs.get("params")
        )
        if response.status_code >= 400:
            error = response.json["error"]
            raise ApiError(response.status_code, error["code"], error["message"], error["details"])
        return response.json
