"""Statistics jobs on a DP grant: noisy histograms, crosstabs, quantiles and describe, refusals, and the budget they spend.

Noisy values are compared with the truth only within several times their 95% bound (a failure has
negligible probability); structure, scales and bounds are compared exactly.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from flask import Flask

from tests.conftest import World, auth, data_file, request_grant
from tests.sandbox.jobkit import approve, events, job_json, run_worker
from tests.sandbox.test_dp_jobs import budget_of, dp_policy, result_of
from tests.sandbox.test_stats_jobs import STATS_POLICY, submit_stats

# age is a dimension here (histograms group by it); income the measure
DP_STATS_POLICY = STATS_POLICY | {"columns": {"pums": STATS_POLICY["columns"]["pums"] | {"age": "dimension"}}, "dp": dp_policy()["dp"]}


@pytest.fixture
def pums_frame() -> pd.DataFrame:
    return pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))


def stats_grant(world: World, dataset_id: str, policy: dict[str, Any]) -> str:
    grant_id = str(request_grant(world, [dataset_id], ["query", "stats"]).json["id"])
    approve(world, grant_id, policy)
    return grant_id


@pytest.fixture
def dp_stats_grant(world: World, pums: dict[str, Any]) -> str:
    return stats_grant(world, pums["id"], DP_STATS_POLICY)


def run_stats(world: World, app: Flask, grant_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    response = submit_stats(world, grant_id, {"dataset": "pums", **spec})
    assert response.status_code == 202, response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    assert job["status"] == "released", job
    return result_of(world, job["id"])


def test_dp_histogram_releases_every_bin_of_the_declared_bounds(
    world: World, app: Flask, dp_stats_grant: str, pums_frame: pd.DataFrame
) -> None:
    result = run_stats(world, app, dp_stats_grant, {"op": "histogram", "column": "age", "bins": 20, "epsilon": 1.0})
    assert [(r["lower"], r["upper"]) for r in result["rows"]] == [(5.0 * i, 5.0 * (i + 1)) for i in range(20)]
    assert {c["name"]: c["kind"] for c in result["columns"]} == {"lower": "group_key", "upper": "group_key", "count": "aggregate"}
    truth = pd.cut(pums_frame.age, [5 * i for i in range(21)], right=False).value_counts(sort=False).tolist()
    assert truth[:3] == [0, 0, 0]  # nobody under 15: the empty bins are released all the same
    errors = result["summary"]["dp"]["errors"]["count"]
    for row, exact, error in zip(result["rows"], truth, errors, strict=True):
        assert abs(row["count"] - exact) <= 5 * error["bound95"]
    assert all(n["rule"] == "dp" and "noise scale" in n["reason"] for n in result["notes"])
    assert result["summary"]["dp"]["op"] == "histogram"
    assert result["summary"]["dp"]["epsilon_per_aggregate"] == 1.0


def test_dp_crosstab_counts_and_means_over_the_declared_domains(
    world: World, app: Flask, dp_stats_grant: str, pums_frame: pd.DataFrame
) -> None:
    spec = {"op": "crosstab", "index": ["sex"], "columns": ["married"], "values": "income", "aggfunc": ["count", "mean"], "epsilon": 1.0}
    result = run_stats(world, app, dp_stats_grant, spec)
    assert [(r["sex"], r["married"]) for r in result["rows"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    dp = result["summary"]["dp"]
    assert dp["epsilon_per_aggregate"] == 0.5
    assert "2 aggregate(s)" in dp["composition"]
    truth = pums_frame.groupby(["sex", "married"]).income.count()
    for row, error in zip(result["rows"], dp["errors"]["count_income"], strict=True):
        assert abs(row["count_income"] - truth[(row["sex"], row["married"])]) <= 5 * error["bound95"]
        assert 0 <= row["mean_income"] <= 500_000


def test_dp_crosstab_margins_are_omitted_and_said_so(world: World, app: Flask, dp_stats_grant: str) -> None:
    result = run_stats(world, app, dp_stats_grant, {"op": "crosstab", "index": ["sex"], "margins": True, "epsilon": 0.5})
    assert [r["sex"] for r in result["rows"]] == [0, 1]
    assert "total_over" not in {c["name"] for c in result["columns"]}
    assert result["summary"]["dp"]["margins"].startswith("omitted")


def test_dp_quantiles_by_a_dimension(world: World, app: Flask, dp_stats_grant: str) -> None:
    result = run_stats(
        world, app, dp_stats_grant, {"op": "quantiles", "column": "income", "q": [0.25, 0.75], "by": ["sex"], "epsilon": 1.0}
    )
    assert [r["sex"] for r in result["rows"]] == [0, 1]
    assert all(0 <= r["quantile_0.25"] <= 500_000 and 0 <= r["quantile_0.75"] <= 500_000 for r in result["rows"])
    errors = result["summary"]["dp"]["errors"]
    assert all(e["rank_bound95"] > 0 for e in errors["quantile_0.25"] + errors["quantile_0.75"])
    assert any("rank error" in n["reason"] for n in result["notes"])


def test_dp_describe_of_count_mean_and_quartiles(world: World, app: Flask, dp_stats_grant: str, pums_frame: pd.DataFrame) -> None:
    spec = {"op": "describe", "columns": ["income"], "statistics": ["count", "mean", "25%", "50%"], "epsilon": 1.0}
    result = run_stats(world, app, dp_stats_grant, spec)
    assert [c["name"] for c in result["columns"]] == ["variable", "count", "mean", "25%", "50%"]
    (row,) = result["rows"]
    assert row["variable"] == "income"
    dp = result["summary"]["dp"]
    assert dp["epsilon_per_aggregate"] == 0.25  # four statistics, one share each
    assert "4 aggregate(s)" in dp["composition"]
    assert abs(row["count"] - pums_frame.income.count()) <= 5 * dp["errors"]["count"][0]["bound95"]
    assert all(0 <= row[s] <= 500_000 for s in ("mean", "25%", "50%"))
    assert set(dp["errors"]["50%"][0]) == {"scale", "rank_bound95"}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"op": "ols", "formula": "income ~ age"}, id="ols"),
        pytest.param({"op": "logit", "formula": "married ~ income"}, id="logit"),
        pytest.param({"op": "correlation", "columns": ["income", "age"]}, id="correlation"),
        pytest.param({"op": "describe", "columns": ["income"]}, id="describe_with_std_min_max"),
    ],
)
def test_stats_without_a_dp_form_are_a_422(world: World, dp_stats_grant: str, spec: dict[str, Any]) -> None:
    response = submit_stats(world, dp_stats_grant, {"dataset": "pums", "epsilon": 0.5, **spec})
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "dp_unsupported"
    assert "rule dp_unsupported" in response.json["error"]["message"]
    assert any(e["action"] == "job.refused" for e in events(world))


def test_a_dp_stats_job_states_its_epsilon(world: World, dp_stats_grant: str) -> None:
    response = submit_stats(world, dp_stats_grant, {"dataset": "pums", "op": "crosstab", "index": ["sex"]})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "epsilon"


def test_a_stats_job_on_a_grant_without_dp_states_no_epsilon(world: World, pums: dict[str, Any]) -> None:
    grant_id = stats_grant(world, pums["id"], STATS_POLICY)
    response = submit_stats(world, grant_id, {"dataset": "pums", "op": "crosstab", "index": ["sex"], "epsilon": 0.5})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "epsilon"


def test_dp_stats_jobs_spend_the_budget_and_are_refused_when_it_is_gone(world: World, app: Flask, dp_stats_grant: str) -> None:
    spec = {"dataset": "pums", "op": "histogram", "column": "age", "bins": 10}
    run_stats(world, app, dp_stats_grant, spec | {"epsilon": 0.75})
    seen = budget_of(world, dp_stats_grant)
    assert (seen["epsilon_spent"], seen["delta_spent"]) == (0.75, 0.0)
    assert sum(1 for e in events(world) if e["action"] == "budget.spend") == 1
    response = submit_stats(world, dp_stats_grant, spec | {"epsilon": 0.5})
    assert response.status_code == 429
    assert response.json["error"]["details"]["limit"] == "grant"
    assert submit_stats(world, dp_stats_grant, spec | {"epsilon": 0.25}).status_code == 202


def test_a_held_dp_stats_output_is_charged_when_released(world: World, app: Flask, pums: dict[str, Any]) -> None:
    dp_stats_grant = stats_grant(world, pums["id"], DP_STATS_POLICY | {"release_mode": "always_review"})
    job_id = submit_stats(world, dp_stats_grant, {"dataset": "pums", "op": "crosstab", "index": ["race"], "epsilon": 0.5}).json["id"]
    run_worker(app)
    assert job_json(world, job_id)["status"] == "held"
    assert budget_of(world, dp_stats_grant)["epsilon_spent"] == 0
    response = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "release", "reason": "fine"})
    assert response.status_code == 200, response.json
    assert budget_of(world, dp_stats_grant)["epsilon_spent"] == 0.5


def test_a_dp_stats_dry_run_is_noisy_mock_output_and_charges_nothing(world: World, dp_stats_grant: str) -> None:
    spec = {"dataset": "pums", "op": "histogram", "column": "age", "bins": 4, "epsilon": 0.5}
    body = {"grant_id": dp_stats_grant, "kind": "stats", "spec": spec, "rows": 400, "seed": 1}
    response = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code == 200, response.json
    assert response.json["synthetic"] is True
    assert response.json["summary"]["dp"]["mock"] is True
    assert [(r["lower"], r["upper"]) for r in response.json["rows"]] == [(0.0, 25.0), (25.0, 50.0), (50.0, 75.0), (75.0, 100.0)]
    assert all(n["rule"] == "dp" for n in response.json["notes"])
    assert budget_of(world, dp_stats_grant)["epsilon_spent"] == 0
    assert "budget.spend" not in {e["action"] for e in events(world)}
