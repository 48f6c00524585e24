"""Differentially private query jobs on PUMS: ε stated per job, refused at submission when it cannot fit, noisy cells over whole domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask

from sandbox import create_app
from sandbox.db import get_db_of
from tests.conftest import PUMS_POLICY, World, app_config, auth, data_file
from tests.sandbox.jobkit import approve, events, job_json, run_worker, submit

COUNT_BY_RACE = "SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY race"


def dp_policy(**dp: Any) -> dict[str, Any]:
    settings = {"epsilon_total": 1.0, "epsilon_per_job": 1.0, "delta_total": 0.0, "max_rows_per_unit": 1} | dp
    return {**PUMS_POLICY, "dp": settings}


@pytest.fixture
def dp_grant(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"], dp_policy())
    return str(grant["id"])


def budget_of(world: World, grant_id: str, token: str | None = None) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/grants/{grant_id}/budget", headers=auth(token or world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def run_one(world: World, app: Flask, grant_id: str, sql: str, epsilon: float) -> dict[str, Any]:
    response = submit(world, grant_id, sql, epsilon=epsilon)
    assert response.status_code == 202, response.json
    run_worker(app)
    return job_json(world, response.json["id"])


def result_of(world: World, job_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_epsilon_is_required_when_the_policy_has_dp(world: World, dp_grant: str) -> None:
    response = submit(world, dp_grant, COUNT_BY_RACE)
    assert response.status_code == 400
    assert "epsilon" in response.json["error"]["message"]


def test_epsilon_is_refused_when_the_policy_has_no_dp(world: World, approved: str) -> None:
    response = submit(world, approved, COUNT_BY_RACE, epsilon=0.5)
    assert response.status_code == 400
    assert "epsilon" in response.json["error"]["message"]


def test_dp_settings_have_no_defaults_and_per_job_within_total(world: World, grant: dict[str, Any]) -> None:
    bad = [
        {**PUMS_POLICY, "dp": {"epsilon_total": 1.0, "epsilon_per_job": 1.0, "max_rows_per_unit": 1}},
        dp_policy(epsilon_per_job=2.0),
        dp_policy(epsilon_total=0),
        dp_policy(delta_total=1.0),
    ]
    for policy in bad:
        response = world.client.post(
            f"/api/v1/grants/{grant['id']}/approve",
            headers=auth(world.steward),
            json={"policy": policy, "expires_at": "2099-01-01T00:00:00Z"},
        )
        assert response.status_code == 400, policy


def test_precheck_refuses_more_than_the_per_job_cap(world: World, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], dp_policy(epsilon_per_job=0.5))
    response = submit(world, grant["id"], COUNT_BY_RACE, epsilon=0.6)
    assert response.status_code == 429
    assert response.json["error"]["code"] == "budget_exhausted"
    assert response.json["error"]["details"]["limit"] == "epsilon_per_job"
    assert any(e["action"] == "job.refused" for e in events(world))


def test_precheck_refuses_more_than_the_grant_has_left(world: World, app: Flask, dp_grant: str) -> None:
    assert run_one(world, app, dp_grant, COUNT_BY_RACE, 0.7)["status"] == "released"
    response = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.4)
    assert response.status_code == 429
    assert response.json["error"]["details"]["limit"] == "grant"
    assert response.json["error"]["details"]["available"] == pytest.approx(0.3)
    assert submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.3).status_code == 202


def test_precheck_refuses_more_than_the_dataset_cap_has_left(world: World, app: Flask, dp_grant: str, pums: dict[str, Any]) -> None:
    response = world.client.post(f"/api/v1/datasets/{pums['id']}/epsilon-cap", headers=auth(world.steward), json={"epsilon_cap": 0.6})
    assert response.status_code == 200, response.json
    assert run_one(world, app, dp_grant, COUNT_BY_RACE, 0.5)["status"] == "released"
    response = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.2)
    assert response.status_code == 429
    assert response.json["error"]["details"]["limit"] == "dataset_cap"
    caps = budget_of(world, dp_grant)["dataset_caps"]
    assert caps == [{"dataset_id": pums["id"], "epsilon_cap": 0.6, "epsilon_spent": 0.5}]


def test_dataset_cap_cannot_go_below_what_is_spent(world: World, app: Flask, dp_grant: str, pums: dict[str, Any]) -> None:
    assert run_one(world, app, dp_grant, COUNT_BY_RACE, 0.5)["status"] == "released"
    url = f"/api/v1/datasets/{pums['id']}/epsilon-cap"
    assert world.client.post(url, headers=auth(world.steward), json={"epsilon_cap": 0.4}).status_code == 409
    assert world.client.post(url, headers=auth(world.other_steward), json={"epsilon_cap": 2.0}).status_code == 403
    assert world.client.post(url, headers=auth(world.steward), json={"epsilon_cap": 0}).status_code == 400
    assert world.client.post(url, headers=auth(world.steward), json={"epsilon_cap": 0.5}).status_code == 200
    assert any(e["action"] == "dataset.epsilon_cap" for e in events(world))


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT age, COUNT(*) AS n FROM pums GROUP BY age", id="group_by_without_domain"),
        pytest.param("SELECT race, COUNT(income) AS n FROM pums GROUP BY race", id="count_of_a_column"),
        pytest.param("SELECT COUNT(*) AS n FROM (SELECT race FROM pums WHERE age > 30) AS t", id="subquery"),
    ],
)
def test_unsupported_dp_query_shapes_are_refused(world: World, dp_grant: str, sql: str) -> None:
    response = submit(world, dp_grant, sql, epsilon=0.5)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "dp_unsupported"


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        pytest.param("SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING COUNT(*) > 5", "having", id="having"),
        pytest.param("SELECT race, COUNT(*) AS n FROM pums GROUP BY race LIMIT 3", "limit", id="limit"),
        pytest.param(
            "SELECT race, SUM(CASE WHEN race = 5 THEN income ELSE 0 END) AS s FROM pums GROUP BY race", "aggregate_argument", id="constant"
        ),
    ],
)
def test_dp_grants_apply_the_same_shape_refusals(world: World, dp_grant: str, sql: str, rule: str) -> None:
    """A DP query that runs must not fail on data or carry a secret in its shape: the same rules as any query, before any ε is spent."""
    response = submit(world, dp_grant, sql, epsilon=0.5)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == rule


def test_dp_count_by_race_releases_every_race_of_the_domain_with_its_error(world: World, app: Flask, dp_grant: str) -> None:
    job = run_one(world, app, dp_grant, COUNT_BY_RACE, 1.0)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    rows = {row["race"]: row["n"] for row in result["rows"]}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    truth = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).groupby("race").size()
    errors = result["summary"]["dp"]["errors"]["n"]
    assert len(errors) == 6
    for race, value in rows.items():
        assert abs(value - truth.get(race, 0)) <= 5 * errors[0]["bound95"]  # 5x the 95% bound: fails with negligible probability
    assert all(e["scale"] > 0 and e["bound95"] > 0 for e in errors)
    assert len(result["notes"]) == 6
    assert all(n["rule"] == "dp" and n["status"] == "pass" and "noise scale" in n["reason"] for n in result["notes"])
    assert result["summary"]["withheld"] == 0
    assert "replaces threshold suppression" in result["summary"]["dp"]["suppression"]


def test_sum_and_mean_split_the_job_epsilon_evenly(world: World, app: Flask, dp_grant: str) -> None:
    sql = "SELECT sex, SUM(income) AS total, AVG(income) AS mean_income FROM pums GROUP BY sex"
    job = run_one(world, app, dp_grant, sql, 1.0)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    assert [r["sex"] for r in result["rows"]] == [0, 1]
    stated = result["summary"]["dp"]
    assert stated["epsilon_per_aggregate"] == pytest.approx(0.5)
    assert "sequential" in stated["composition"]
    assert set(stated["outputs"]) == {"total", "mean_income"}
    assert sum(output["epsilon"] for output in stated["outputs"].values()) == pytest.approx(1.0)  # the job's epsilon, all of it
    assert "(value - lower)" in stated["outputs"]["mean_income"]["mechanism"]  # the mean's share goes to one release, not split again
    assert all(0 <= r["mean_income"] <= 500_000 for r in result["rows"])


def test_keys_absent_from_the_data_still_appear(world: World, app: Flask, dp_grant: str) -> None:
    sql = "SELECT educ, COUNT(*) AS n FROM pums WHERE race = 6 GROUP BY educ"
    job = run_one(world, app, dp_grant, sql, 1.0)
    rows = result_of(world, job["id"])["rows"]
    assert [r["educ"] for r in rows] == list(range(1, 17))  # race 6 has 3 persons: most levels are absent from the data


def test_budget_reflects_spends_and_survives_a_restart(world: World, app: Flask, dp_grant: str, tmp_path: Path, database_url: str) -> None:
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0
    assert run_one(world, app, dp_grant, COUNT_BY_RACE, 0.25)["status"] == "released"
    assert run_one(world, app, dp_grant, COUNT_BY_RACE, 0.5)["status"] == "released"
    expected = {
        "epsilon_total": 1.0,
        "epsilon_spent": 0.75,
        "epsilon_remaining": 0.25,
        "delta_total": 0.0,
        "delta_spent": 0.0,
        "delta_remaining": 0.0,
    }
    seen = budget_of(world, dp_grant)
    assert {k: seen[k] for k in expected} == expected
    assert budget_of(world, dp_grant, world.steward) == seen
    assert budget_of(world, dp_grant, world.auditor) == seen
    restarted = create_app(app_config(tmp_path, database_url))
    try:
        again = restarted.test_client().get(f"/api/v1/grants/{dp_grant}/budget", headers=auth(world.analyst))
    finally:
        get_db_of(restarted).engine.dispose()
    assert again.status_code == 200
    assert again.json == seen
    assert sum(1 for e in events(world) if e["action"] == "budget.spend") == 2


def test_budget_is_null_without_dp(world: World, approved: str) -> None:
    assert set(budget_of(world, approved).values()) == {None}


def test_a_release_the_budget_no_longer_covers_fails_with_nothing_released(world: World, app: Flask, dp_grant: str) -> None:
    first = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.6).json["id"]
    second = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.6).json["id"]  # both fit before either is spent
    assert run_worker(app) == 1  # the second is failed at its claim, before it reads anything (test_dp_failures.py)
    assert job_json(world, first)["status"] == "released"
    late = job_json(world, second)
    assert late["status"] == "failed"
    assert late["reason"] == "privacy budget exhausted"
    assert world.client.get(f"/api/v1/jobs/{second}/result", headers=auth(world.analyst)).status_code == 409
    assert budget_of(world, dp_grant)["epsilon_spent"] == pytest.approx(0.6)


def test_held_dp_output_is_charged_when_the_auditor_releases_it(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], dp_policy() | {"release_mode": "always_review"})
    job = run_one(world, app, grant["id"], COUNT_BY_RACE, 0.5)
    assert job["status"] == "held"
    assert budget_of(world, grant["id"])["epsilon_spent"] == 0
    response = world.client.post(
        f"/api/v1/reviews/{job['id']}", headers=auth(world.auditor), json={"decision": "release", "reason": "fine"}
    )
    assert response.status_code == 200, response.json
    assert response.json["status"] == "released"
    assert budget_of(world, grant["id"])["epsilon_spent"] == 0.5


def test_averaging_attack_is_stopped_by_the_budget(world: World, app: Flask, grant: dict[str, Any]) -> None:
    """Repeating one count to average its noise away ends when the budget does: floor(total / ε) answers."""
    approve(world, grant["id"], dp_policy(epsilon_total=5.0, epsilon_per_job=0.5))
    sql = "SELECT COUNT(*) AS n FROM pums WHERE race = 6"
    answers: list[float] = []
    bound = 0.0
    for _ in range(50):
        response = submit(world, grant["id"], sql, epsilon=0.5)
        if response.status_code == 429:
            break
        assert response.status_code == 202, response.json
        run_worker(app)
        result = result_of(world, response.json["id"])
        answers.append(result["rows"][0]["n"])
        bound = result["summary"]["dp"]["errors"]["n"][0]["bound95"]
    assert len(answers) == 10  # floor(5.0 / 0.5)
    truth = int((pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))["race"] == 6).sum())
    mean_error = sum(answers) / len(answers) - truth
    # The mean of 10 answers at ε = 0.5 is about as accurate as one answer at the spent ε = 5: its error
    # stays well inside one answer's 95% bound (scale 2; the mean's standard deviation is about 0.9).
    assert abs(mean_error) <= bound
    assert budget_of(world, grant["id"])["epsilon_remaining"] == 0


def test_tracker_learns_nothing_beyond_the_noise(world: World, app: Flask, grant: dict[str, Any]) -> None:
    """The four-query tracker for the one race-5 person (T = sex = 1) on a DP grant.

    Q(C or T) + Q(C or not T) - Q(T) - Q(not T) estimates the person's income (56000), but each answer
    carries Laplace noise for a sum bounded by [0, 500000]: the estimate's error bound at the ε spent is
    far larger than the income itself, so the tracker learns nothing the noise does not hide.
    """
    approve(world, grant["id"], dp_policy(epsilon_total=4.0, epsilon_per_job=1.0))
    total = "SELECT SUM(income) AS total FROM pums WHERE "
    queries = {  # the analyst's SQL, the same condition for pandas, and its sign in the tracker sum
        "c_or_t": (total + "race = 5 OR sex = 1", "race == 5 or sex == 1", 1),
        "c_or_not_t": (total + "race = 5 OR sex = 0", "race == 5 or sex == 0", 1),
        "t": (total + "sex = 1", "sex == 1", -1),
        "not_t": (total + "sex = 0", "sex == 0", -1),
    }
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    estimate, variance, exact = 0.0, 0.0, []
    for sql, condition, sign in queries.values():
        job = run_one(world, app, grant["id"], sql, 1.0)
        assert job["status"] == "released", job
        result = result_of(world, job["id"])
        answer = result["rows"][0]["total"]
        exact.append(answer == float(pums.query(condition)["income"].sum()))
        estimate += sign * answer
        scale = result["summary"]["dp"]["errors"]["total"][0]["scale"]
        variance += 2 * scale**2  # Laplace variance
    assert submit(world, grant["id"], "SELECT SUM(income) AS total FROM pums WHERE sex = 1", epsilon=1.0).status_code == 429
    assert not any(exact), "an answer came back without noise"
    spread = variance**0.5
    assert spread > 10 * 56000  # the noise the spent ε promises dwarfs the secret
    assert abs(estimate - 56000) < 8 * spread  # and the estimate is just that noise (a sanity check on the pipeline)


QUANTILE_AGGREGATES = [*PUMS_POLICY["aggregates"], "median", "quantile"]
GRID_STEP = 500_000 / 999  # noisy_quantiles' default: 1,000 candidates evenly spaced over income's bounds [0, 500000]


@pytest.fixture
def quantile_grant(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"], dp_policy() | {"aggregates": QUANTILE_AGGREGATES})
    return str(grant["id"])


def test_dp_median_by_race_releases_every_race_within_the_bounds(world: World, app: Flask, quantile_grant: str) -> None:
    job = run_one(world, app, quantile_grant, "SELECT race, MEDIAN(income) AS m FROM pums GROUP BY race", 1.0)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    assert [r["race"] for r in result["rows"]] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= r["m"] <= 500_000 for r in result["rows"])
    errors = result["summary"]["dp"]["errors"]["m"]
    assert len(errors) == 6
    assert all(e["scale"] > 0 and e["rank_bound95"] > 0 for e in errors)
    assert len(result["notes"]) == 6
    assert all(n["rule"] == "dp" and "rank error" in n["reason"] for n in result["notes"])


def test_dp_median_of_the_whole_table_is_near_the_true_median(world: World, app: Flask, quantile_grant: str) -> None:
    job = run_one(world, app, quantile_grant, "SELECT MEDIAN(income) AS m FROM pums", 1.0)
    assert job["status"] == "released", job
    released = result_of(world, job["id"])["rows"][0]["m"]
    truth = float(pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))["income"].median())
    # 1000 persons, about 30 of them within 1000 of the median: at ε = 1 (rank scale 1) a candidate 2 grid
    # steps (1001) off scores about 15 ranks worse than the nearest, so this fails with negligible probability
    # (3,000 draws stayed within 370); a random candidate would fail it over 99% of the time.
    assert abs(released - truth) <= 2 * GRID_STEP


def test_quantile_and_median_split_epsilon_with_the_other_aggregates(world: World, app: Flask, quantile_grant: str) -> None:
    sql = "SELECT sex, COUNT(*) AS n, QUANTILE_CONT(income, 0.25) AS q1, QUANTILE(income, 0.75) AS q3 FROM pums GROUP BY sex"
    job = run_one(world, app, quantile_grant, sql, 0.9)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    assert result["summary"]["dp"]["epsilon_per_aggregate"] == pytest.approx(0.3)
    assert all(0 <= r["q1"] <= 500_000 and 0 <= r["q3"] <= 500_000 for r in result["rows"])
    assert {"bound95"} <= set(result["summary"]["dp"]["errors"]["n"][0])
    assert budget_of(world, quantile_grant)["epsilon_spent"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT QUANTILE_CONT(income, 0) AS q FROM pums", id="q_zero"),
        pytest.param("SELECT QUANTILE(income, 1) AS q FROM pums", id="q_one"),
        pytest.param("SELECT race, MEDIAN(married) AS m FROM pums GROUP BY race", id="unbounded_column"),
    ],
)
def test_unsupported_quantiles_are_refused(world: World, grant: dict[str, Any], sql: str) -> None:
    columns = {"pums": {**PUMS_POLICY["columns"]["pums"], "married": "measure"}}  # married has a domain but no bounds
    approve(world, grant["id"], dp_policy() | {"aggregates": QUANTILE_AGGREGATES, "columns": columns})
    response = submit(world, grant["id"], sql, epsilon=0.5)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "dp_unsupported"


def test_a_quantile_outside_zero_to_one_is_refused(world: World, quantile_grant: str) -> None:
    response = submit(world, quantile_grant, "SELECT QUANTILE_CONT(income, 1.5) AS q FROM pums", epsilon=0.5)
    assert response.status_code == 422, response.json


def test_median_needs_the_policy_to_allow_it(world: World, dp_grant: str) -> None:
    response = submit(world, dp_grant, "SELECT MEDIAN(income) AS m FROM pums", epsilon=0.5)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "aggregate_not_allowed"
