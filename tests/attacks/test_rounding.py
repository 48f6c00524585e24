"""Rounding: under a rounding policy every released number is rounded or derived from rounded counts and sums.

The attacks read an exact count through a number that is not itself a count: a mean or a spread of a
0/1 column beside a rounded count (``AVG(married)`` is ``married / n``), a quantile's position, a
describe or pivot mean. Each either is refused before it runs, or releases numbers that are
functions of the rounded counts and totals only, so the exact count cannot be computed from them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from flask import Flask

from sandbox.demo.seed import TEACHER_META
from tests.attacks.kit import POLICIES, Attack, assert_refused, released
from tests.conftest import PUMS_META, World, auth, data_file, request_grant
from tests.datafiles import DEMO_DATA
from tests.sandbox.jobkit import approve, job_json, run_worker

BASE = 5
KINDS = ["query", "stats"]
AGGREGATES = ["count", "sum", "avg", "stddev", "variance", "quantile", "median", "min", "max", "count_distinct"]


def frame(dataset: str) -> pd.DataFrame:
    return pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv") if dataset == "pums" else DEMO_DATA / "teacher_survey.csv")


def rounded(value: float) -> float:
    return float(round(value / BASE) * BASE)


def grant(world: World, dataset: str) -> str:
    """An approved auto-release grant with rounding to 5; on PUMS the 0/1 column ``married`` is a measure."""
    meta, path = (
        (PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv")) if dataset == "pums" else (TEACHER_META, DEMO_DATA / "teacher_survey.csv")
    )
    uploaded = world.upload(world.steward, meta, path)
    assert uploaded.status_code == 201, uploaded.json
    requested = request_grant(world, [uploaded.json["id"]], KINDS)
    assert requested.status_code == 201, requested.json
    columns = POLICIES[dataset]["columns"][dataset] | ({"married": "measure"} if dataset == "pums" else {})
    policy: dict[str, Any] = {
        **POLICIES[dataset],
        "columns": {dataset: columns},
        "aggregates": AGGREGATES,
        "job_kinds": KINDS,
        "disclosure": {"rounding": True, "round_base": BASE},
    }
    approve(world, requested.json["id"], policy)
    return str(requested.json["id"])


REFUSED = {
    "avg_of_branch_counts": Attack("pums", "SELECT AVG(CASE WHEN sex = 0 THEN 1 ELSE 2 END) AS a FROM pums", "aggregate_argument"),
    "count_scaled_past_rounding": Attack("pums", "SELECT sex, COUNT(*) * 100 AS n FROM pums GROUP BY sex", "aggregate_output"),
    "median_position": Attack("pums", "SELECT educ, MEDIAN(married) AS m FROM pums GROUP BY educ", "aggregate_not_allowed"),
    "quantile_flip_point": Attack("pums", "SELECT QUANTILE_DISC(married, 0.4) AS q FROM pums", "aggregate_not_allowed"),
    "population_spread": Attack("pums", "SELECT sex, STDDEV_POP(married) AS s FROM pums GROUP BY sex", "aggregate_not_allowed"),
    "teacher_quantile": Attack(
        "teacher_survey", "SELECT sex, QUANTILE_CONT(optimism, 0.5) AS q FROM teacher_survey GROUP BY sex", "aggregate_not_allowed"
    ),
}


@pytest.mark.parametrize("attack", REFUSED.values(), ids=REFUSED.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, grant(world, attack.dataset), attack)


# (dataset, measure, dimension): a mean and a count of each group, the exact count of ones or the exact total to protect
MEANS = {"pums_married_by_educ": ("pums", "married", "educ"), "teacher_optimism_by_sex": ("teacher_survey", "optimism", "sex")}


@pytest.mark.parametrize(("dataset", "measure", "dimension"), MEANS.values(), ids=MEANS.keys())
def test_a_mean_beside_its_count_gives_back_only_rounded_numbers(
    world: World, app: Flask, dataset: str, measure: str, dimension: str
) -> None:
    m = measure
    sql = f"SELECT {dimension}, COUNT({m}) AS n, SUM({m}) AS s, AVG({m}) AS a, STDDEV({m}) AS sd FROM {dataset} GROUP BY {dimension}"  # noqa: S608
    status, rows = released(world, app, grant(world, dataset), sql)
    assert status == "released"
    data = frame(dataset)
    exact = data.groupby(dimension)[measure].agg(["count", "sum"]).join(data.assign(sq=data[measure] ** 2).groupby(dimension)["sq"].sum())
    seen = 0
    for row in rows:
        if row["a"] is None:
            continue
        n, s, q = (rounded(float(v)) for v in exact.loc[row[dimension], ["count", "sum", "sq"]])
        assert (row["n"], row["s"]) == (n, s)
        assert row["a"] == pytest.approx(s / n, rel=1e-12)  # a function of the released rounded numbers ...
        assert row["sd"] == pytest.approx(math.sqrt(max(0.0, (q - s * s / n) / (n - 1))), rel=1e-9)
        seen += 1
    assert seen >= 2
    # ... and not the exact mean, from which the exact total would follow: exact = mean * exact count
    assert any(row["a"] != pytest.approx(exact.loc[row[dimension], "sum"] / exact.loc[row[dimension], "count"]) for row in rows)


def stats(world: World, app: Flask, grant_id: str, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Submit a stats job; when accepted, run it and return its status and released form."""
    body = {"grant_id": grant_id, "kind": "stats", "spec": spec}
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json=body)
    if response.status_code not in (201, 202):
        return response.status_code, dict(response.json)
    run_worker(app)
    job = job_json(world, response.json["id"])
    assert job["status"] == "released", job
    return 200, dict(world.client.get(f"/api/v1/jobs/{job['id']}/result", headers=auth(world.analyst)).json)


def test_describe_and_pivot_means_come_from_rounded_sums(world: World, app: Flask) -> None:
    grant_id = grant(world, "pums")
    data = frame("pums")
    describe = {"op": "describe", "dataset": "pums", "columns": ["married"], "statistics": ["count", "mean"]}
    code, result = stats(world, app, grant_id, describe)
    assert code == 200
    [row] = result["rows"]
    n, s = rounded(data["married"].count()), rounded(data["married"].sum())
    assert (row["count"], row["mean"]) == (n, pytest.approx(s / n, rel=1e-12))

    spec = {"op": "pivot", "dataset": "pums", "index": ["sex"], "values": ["married"], "aggfunc": ["count", "mean", "min", "max"]}
    code, result = stats(world, app, grant_id, spec)
    assert code == 200
    for row in result["rows"]:
        group = data[data["sex"] == row["sex"]]["married"]
        n, s = rounded(group.count()), rounded(group.sum())
        assert (row["count_married"], row["mean_married"]) == (n, pytest.approx(s / n, rel=1e-12))
        assert all(row[c] is None or row[c] % BASE == 0 for c in ("min_married", "max_married"))


@pytest.mark.parametrize(
    "spec",
    [
        {"op": "describe", "dataset": "pums", "columns": ["income"]},  # the default statistics include quartiles
        {"op": "quantiles", "dataset": "pums", "column": "married", "q": [0.4]},
        {"op": "pivot", "dataset": "pums", "index": ["sex"], "values": ["married"], "aggfunc": ["median"]},
        {"op": "correlation", "dataset": "pums", "columns": ["married", "income"]},
        {"op": "ols", "dataset": "pums", "formula": "married ~ 1"},
    ],
    ids=["describe_quartiles", "quantiles", "pivot_median", "correlation", "ols_intercept_is_the_mean"],
)
def test_stats_that_cannot_be_rounded_are_refused(world: World, app: Flask, spec: dict[str, Any]) -> None:
    code, body = stats(world, app, grant(world, "pums"), spec)
    assert code == 422, body
    assert body["error"]["details"]["rule"] == "aggregate_not_allowed"
    assert run_worker(app) == 0
