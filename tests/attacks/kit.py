"""The attacks' world: PUMS or the teacher survey uploaded, a grant approved under ``release_mode: auto``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from sandbox.demo.seed import TEACHER_META
from tests.conftest import PUMS_META, World, auth, data_file, request_grant
from tests.datafiles import DEMO_DATA
from tests.sandbox.jobkit import approve, job_json, run_worker, submit

RACE5_INCOME = 56000  # the one race-5 person of PUMS_pid

POLICIES: dict[str, dict[str, Any]] = {
    "pums": {
        "columns": {"pums": {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "income": "measure"}},
        "aggregates": ["count", "sum", "avg", "stddev", "quantile", "min", "max", "count_distinct"],
        "job_kinds": ["query"],
        "release_mode": "auto",
    },
    "teacher_survey": {
        "columns": {
            "teacher_survey": {
                "sex": "dimension",
                "age": "dimension",
                "marital_status": "dimension",
                "highest_education_level": "dimension",
                "optimism": "measure",
                "life_satisfaction": "measure",
            }
        },
        "aggregates": ["count", "sum", "avg", "stddev", "quantile", "min", "max", "count_distinct"],
        "job_kinds": ["query"],
        "release_mode": "auto",
    },
}


@dataclass(frozen=True)
class Attack:
    dataset: str  # "pums" or "teacher_survey"
    sql: str
    rule: str | None = None  # the rule that refuses it; None: it runs, and the test reads what was released


def granted(world: World, dataset: str, rounding: bool = False) -> str:
    """The id of an approved auto-release grant of the analyst's bank on ``dataset``."""
    meta, path = (
        (PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv")) if dataset == "pums" else (TEACHER_META, DEMO_DATA / "teacher_survey.csv")
    )
    uploaded = world.upload(world.steward, meta, path)
    assert uploaded.status_code == 201, uploaded.json
    grant = request_grant(world, [uploaded.json["id"]])
    assert grant.status_code == 201, grant.json
    policy = POLICIES[dataset]
    if rounding:
        policy = {**policy, "disclosure": {"rounding": True, "round_base": 5}}
    approve(world, grant.json["id"], policy)
    return str(grant.json["id"])


def assert_refused(world: World, app: Flask, grant_id: str, attack: Attack) -> None:
    """The submission is a 422 naming the rule, with no value from the data; no job was queued or ran."""
    response = submit(world, grant_id, attack.sql)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["details"]["rule"] == attack.rule
    assert str(RACE5_INCOME) not in error["message"]
    assert run_worker(app) == 0
    jobs = world.client.get("/api/v1/jobs", headers=auth(world.analyst)).json["items"]
    assert jobs == []


def released(world: World, app: Flask, grant_id: str, sql: str) -> tuple[str, list[dict[str, Any]]]:
    """Run ``sql`` to the end: its final status and, when released, the released rows."""
    response = submit(world, grant_id, sql)
    assert response.status_code in (201, 202), response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    if job["status"] != "released":
        return str(job["status"]), []
    result = world.client.get(f"/api/v1/jobs/{job['id']}/result", headers=auth(world.analyst)).json
    return str(job["status"]), list(result["rows"])
