"""DP grants beyond declared domains: key selection and its δ, COUNT(DISTINCT <privacy unit>), and the DP dry run.

Noisy values are compared with the truth only within several times their 95% bound, and key
selection only on keys many noise scales above or below its threshold.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from sqlalchemy import update

from core.schema import DatasetMeta
from jobs.mock import mock_table
from policies.budget import Epsilon
from policies.dp import counts_mechanism
from sandbox.db import get_db_of
from sandbox.models import BudgetSpend
from tests.conftest import PUMS_META, PUMS_POLICY, World, auth, data_file, request_grant
from tests.sandbox.jobkit import approve, events, run_worker, submit
from tests.sandbox.test_dp_jobs import COUNT_BY_RACE, budget_of, dp_policy, result_of, run_one
from tests.sandbox.test_dp_stats import stats_grant

# race declared without its domain: its values are released only where key selection chooses them
RACE_UNDECLARED = copy.deepcopy(PUMS_META)
del RACE_UNDECLARED["columns"]["race"]["domain"]
# ε 1 per job spends δ = 2e-6 * 1 / 2 = 1e-6: the key selection's half of ε has Laplace scale 2 and threshold 27
WITH_DELTA = dp_policy(epsilon_total=2.0, delta_total=2e-6)


def upload(world: World, meta: dict[str, Any], csv: str) -> str:
    response = world.upload(world.steward, meta, data_file(f"smartnoise-sdk/{csv}"))
    assert response.status_code == 201, response.json
    return str(response.json["id"])


@pytest.fixture
def undeclared(world: World) -> str:
    """PUMS with race declared without a domain."""
    return upload(world, RACE_UNDECLARED, "PUMS_pid.csv")


def test_keys_without_domain_are_selected_and_delta_is_charged(world: World, app: Flask, undeclared: str) -> None:
    grant_id = str(request_grant(world, [undeclared]).json["id"])
    approve(world, grant_id, WITH_DELTA)
    job = run_one(world, app, grant_id, COUNT_BY_RACE, 1.0)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    races = [row["race"] for row in result["rows"]]
    # 550, 71, 265 and 108 persons are 22+ scales above the threshold; 1 and 5 persons as far below it
    assert races == [1, 2, 3, 4]
    selection = result["summary"]["dp"]["key_selection"]
    assert selection["keys"] == ["race"]
    assert (selection["epsilon"], selection["delta"], selection["released"]) == (0.5, 1e-6, 4)
    assert selection["noise_scale"] == 2.0
    assert selection["threshold"] > 5
    assert result["summary"]["dp"]["epsilon_per_aggregate"] == 0.5
    assert "key selection" in result["summary"]["dp"]["composition"]
    truth = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).groupby("race").size()
    for row, error in zip(result["rows"], result["summary"]["dp"]["errors"]["n"], strict=True):
        assert abs(row["n"] - truth[row["race"]]) <= 5 * error["bound95"]
    seen = budget_of(world, grant_id)
    assert (seen["epsilon_spent"], seen["delta_spent"], seen["delta_remaining"]) == (1.0, 1e-6, 1e-6)
    spends = [e["details"] for e in events(world) if e["action"] == "budget.spend"]
    assert [(s["epsilon"], s["delta"]) for s in spends] == [("1.0", "1e-06")]


def test_a_job_with_declared_keys_spends_no_delta(world: World, app: Flask, undeclared: str) -> None:
    grant_id = str(request_grant(world, [undeclared]).json["id"])
    approve(world, grant_id, WITH_DELTA)
    job = run_one(world, app, grant_id, "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", 1.0)
    assert job["status"] == "released", job
    assert result_of(world, job["id"])["summary"]["dp"]["key_selection"] is None
    assert budget_of(world, grant_id)["delta_spent"] == 0


def test_a_stats_dimension_without_domain_is_selected_too(world: World, app: Flask, undeclared: str) -> None:
    policy = WITH_DELTA | {"columns": {"pums": PUMS_POLICY["columns"]["pums"]}, "job_kinds": ["query", "stats"]}
    grant_id = stats_grant(world, undeclared, policy)
    spec = {"dataset": "pums", "op": "crosstab", "index": ["sex"], "columns": ["race"], "epsilon": 1.0}
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "stats", "spec": spec})
    assert response.status_code == 202, response.json
    run_worker(app)
    result = result_of(world, response.json["id"])
    cells = [(row["sex"], row["race"]) for row in result["rows"]]
    assert {race for _, race in cells} == {1, 2, 3, 4}
    assert cells == sorted(cells)  # every selected race crossed with both sexes of the declared domain
    assert len(cells) == 8
    assert budget_of(world, grant_id)["delta_spent"] == 1e-6


def test_without_delta_a_key_needs_a_declared_domain(world: World, undeclared: str) -> None:
    grant_id = str(request_grant(world, [undeclared]).json["id"])
    approve(world, grant_id, dp_policy())
    response = submit(world, grant_id, COUNT_BY_RACE, epsilon=0.5)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "dp_unsupported"
    assert "a declared domain or a delta is needed" in response.json["error"]["message"]


def test_count_distinct_counts_persons_with_several_rows(world: World, app: Flask) -> None:
    dataset_id = upload(world, PUMS_META, "PUMS_dup.csv")
    grant_id = str(request_grant(world, [dataset_id]).json["id"])
    approve(world, grant_id, dp_policy(max_rows_per_unit=4) | {"aggregates": ["count", "count_distinct"]})
    sql = "SELECT race, COUNT(DISTINCT pid) AS persons FROM pums GROUP BY race"
    job = run_one(world, app, grant_id, sql, 1.0)
    assert job["status"] == "released", job
    result = result_of(world, job["id"])
    dup = pd.read_csv(data_file("smartnoise-sdk/PUMS_dup.csv"))
    persons, rows = dup.groupby("race").pid.nunique(), dup.groupby("race").size()
    errors = result["summary"]["dp"]["errors"]["persons"]
    # a person's (up to 4) rows could fall in 4 of the 6 races: sensitivity 4, whatever this data holds
    assert errors[0]["scale"] == counts_mechanism(Epsilon(1.0), 4).scale
    for row, error in zip(result["rows"], errors, strict=True):
        assert abs(row["persons"] - persons[row["race"]]) <= 5 * error["bound95"]
    assert abs(result["rows"][0]["persons"] - rows[1]) > 500  # race 1: 550 persons in 1097 rows


def test_dp_dry_run_noises_mock_rows_and_charges_nothing(world: World, pums: dict[str, Any], grant: dict[str, Any]) -> None:
    approve(world, grant["id"], dp_policy())
    body = {"grant_id": grant["id"], "kind": "query", "spec": {"sql": COUNT_BY_RACE, "epsilon": 0.1}, "rows": 1000, "seed": 7}
    response = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert response.status_code == 200, response.json
    answer = response.json
    assert answer["synthetic"] is True
    dp = answer["summary"]["dp"]
    assert dp["mock"] is True
    assert dp["epsilon"] == 0.1
    assert all(n["rule"] == "dp" for n in answer["notes"])
    mock = mock_table(DatasetMeta.model_validate(PUMS_META).schema_only(), 1000, 7).to_pandas()
    exact = mock.groupby("race").size()
    noisy = {row["race"]: row["n"] for row in answer["rows"]}
    assert sorted(noisy) == [1, 2, 3, 4, 5, 6]
    for race, error in zip(sorted(noisy), dp["errors"]["n"], strict=True):
        assert abs(noisy[race] - exact[race]) <= 5 * error["bound95"]
    # at ε = 0.1 each count is exact with probability about 0.05: all six exact would be about 1 in 10^8
    assert any(noisy[race] != exact[race] for race in noisy)
    assert budget_of(world, grant["id"])["epsilon_spent"] == 0
    assert not {"budget.spend", "job.submit"} & {e["action"] for e in events(world)}


def test_precheck_refuses_a_selection_whose_delta_no_longer_fits(world: World, app: Flask, undeclared: str) -> None:
    grant_id = str(request_grant(world, [undeclared]).json["id"])
    approve(world, grant_id, WITH_DELTA)
    assert run_one(world, app, grant_id, COUNT_BY_RACE, 1.0)["status"] == "released"
    with get_db_of(app).writing() as session:  # as if an earlier policy version had let more δ be spent
        session.execute(update(BudgetSpend).where(BudgetSpend.grant_id == grant_id).values(delta="2e-06"))
    response = submit(world, grant_id, COUNT_BY_RACE, epsilon=0.5)
    assert response.status_code == 429, response.json
    assert response.json["error"]["details"]["limit"] == "grant_delta"
    declared = submit(world, grant_id, "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", epsilon=0.5)
    assert declared.status_code == 202, declared.json  # no key selection, no δ needed
