"""Helpers of the job tests: approve a grant, submit a query, run a worker in-process, read jobs and events."""

from __future__ import annotations

from typing import Any

from flask import Flask

from sandbox.app import instance_of
from sandbox.runtime.worker import Worker
from tests.conftest import PUMS_POLICY, World, auth

RACE_SQL = "SELECT race, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY race ORDER BY race"


def approve(world: World, grant_id: str, policy: dict[str, Any] | None = None) -> None:
    """Approve as the steward; a DP policy first confirms the suggested ε cap of each dataset that has none."""
    body = {"policy": policy or PUMS_POLICY, "expires_at": "2099-01-01T00:00:00Z"}
    response = world.client.post(f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json=body)
    if response.status_code == 409 and response.json["error"]["code"] == "epsilon_cap_required":
        for dataset in response.json["error"]["details"]["datasets"]:
            confirm_cap(world, dataset["dataset_id"], dataset["suggested_epsilon_cap"])
        response = world.client.post(f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json=body)
    assert response.status_code == 200, response.json


def confirm_cap(world: World, dataset_id: str, epsilon_cap: float) -> None:
    url = f"/api/v1/datasets/{dataset_id}/epsilon-cap"
    response = world.client.post(url, headers=auth(world.steward), json={"epsilon_cap": epsilon_cap})
    assert response.status_code == 200, response.json


def submit(world: World, grant_id: str, sql: str, token: str | None = None, **spec: Any) -> Any:
    return world.client.post(
        "/api/v1/jobs", headers=auth(token or world.analyst), json={"grant_id": grant_id, "kind": "query", "spec": {"sql": sql, **spec}}
    )


def run_worker(app: Flask, engine: Any = None) -> int:
    return Worker(instance_of(app), engine=engine).run(once=True)


def job_json(world: World, job_id: str, token: str | None = None) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}", headers=auth(token or world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def events(world: World) -> list[dict[str, Any]]:
    return list(world.client.get("/api/v1/audit/events?limit=1000", headers=auth(world.auditor)).json["items"])
