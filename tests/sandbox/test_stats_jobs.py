"""Statistics jobs through the API and the worker: tables with margins, models refused or released."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from flask import Flask

from tests.conftest import PUMS_POLICY, World, auth, data_file
from tests.sandbox.jobkit import approve, job_json, run_worker

STATS_POLICY: dict[str, Any] = {
    **PUMS_POLICY,
    "columns": {
        "pums": {"sex": "dimension", "educ": "dimension", "race": "dimension", "married": "plain", "age": "measure", "income": "measure"}
    },
    "aggregates": ["count", "sum", "avg", "median", "quantile", "stddev"],
    "job_kinds": ["query", "stats"],
}


@pytest.fixture
def stats_grant(world: World, pums: dict[str, Any]) -> str:
    response = world.client.post(
        "/api/v1/grants",
        headers=auth(world.analyst),
        json={
            "dataset_ids": [pums["id"]],
            "scenario": "Statistics for a credit-risk model",
            "requested": {"job_kinds": ["query", "stats"]},
        },
    )
    grant_id = str(response.json["id"])
    approve(world, grant_id, STATS_POLICY)
    return grant_id


def submit_stats(world: World, grant_id: str, spec: dict[str, Any]) -> Any:
    return world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "stats", "spec": spec})


def result_of(world: World, job_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_crosstab_with_margins(world: World, app: Flask, stats_grant: str) -> None:
    response = submit_stats(
        world, stats_grant, {"op": "crosstab", "dataset": "pums", "index": ["sex"], "columns": ["married"], "margins": True}
    )
    assert response.status_code == 202, response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    assert job["status"] == "released", job
    result = result_of(world, response.json["id"])
    assert {c["name"]: c["kind"] for c in result["columns"]} == {
        "sex": "group_key",
        "married": "group_key",
        "count": "aggregate",
        "total_over": "margin",
    }
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    cells = {(r["sex"], r["married"], r["total_over"]): r["count"] for r in result["rows"]}
    assert cells[(None, None, "sex,married")] == len(pums)
    for (sex, married), n in pums.groupby(["sex", "married"]).size().items():
        assert cells[(sex, married, "")] == n


def test_model_with_a_one_person_category_is_blocked(world: World, app: Flask, stats_grant: str) -> None:
    job_id = submit_stats(world, stats_grant, {"op": "ols", "dataset": "pums", "formula": "income ~ C(race)"}).json["id"]
    run_worker(app)
    job = job_json(world, job_id)
    assert job["status"] == "blocked"
    assert job["reason"] == "withheld by output control"  # the rule and the level are the auditors'
    assert "race" in job_json(world, job_id, token=world.steward)["reason"]
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 409


def test_model_releases_coefficients_only(world: World, app: Flask, stats_grant: str) -> None:
    import statsmodels.formula.api as smf

    job_id = submit_stats(world, stats_grant, {"op": "ols", "dataset": "pums", "formula": "income ~ age + C(sex)"}).json["id"]
    run_worker(app)
    assert job_json(world, job_id)["status"] == "released"
    result = result_of(world, job_id)
    expected = smf.ols("income ~ age + C(sex)", pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))).fit()
    coefs = {row["term"]: row["coef"] for row in result["rows"]}
    for term, value in expected.params.items():
        assert coefs[term] == pytest.approx(value)
    assert len(result["rows"]) == len(expected.params)  # no fitted values, no residuals
    assert result["summary"]["fit"]


def test_stats_policy_refusal_is_a_422(world: World, stats_grant: str) -> None:
    response = submit_stats(world, stats_grant, {"op": "crosstab", "dataset": "pums", "index": ["income"]})
    assert response.status_code == 422
    assert response.json["error"]["details"]["rule"]


def test_stats_dry_run(world: World, stats_grant: str) -> None:
    response = world.client.post(
        "/api/v1/jobs/dry-run",
        headers=auth(world.analyst),
        json={
            "grant_id": stats_grant,
            "kind": "stats",
            "spec": {"op": "describe", "dataset": "pums", "columns": ["income"], "statistics": ["count", "mean", "std", "50%"]},
            "rows": 300,
            "seed": 1,
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["synthetic"] is True
