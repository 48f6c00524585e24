"""Costly stages are bounded before they start: the policy's cost limits refuse a job at submission (422).

The plan's estimate (``jobs.cost``) is checked against the grant policy's ``limits`` in the policy
pre-check: a job over a cap is answered ``too_expensive`` naming the cap and the estimate, is never
queued, and is on the ledger like any refusal. The estimate uses the row count the catalogue shows.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from core.errors import TooExpensive
from core.values import JobKind
from jobs.engine import DuckDBEngine, QueryInterrupted
from jobs.stats import plan as plan_stats
from policies.model import Policy
from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime.definition import DatasetRef, JobDefinition, Outcome
from sandbox.runtime.definition import Limits as RunLimits
from sandbox.runtime.executor import DRY_RUN, Executor
from sandbox.service.datasets import catalogue_count
from sandbox.service.jobs import public_rows
from tests.conftest import PUMS_POLICY, World, auth
from tests.jobs.conftest import SCHEMAS, frames_to_tables, read_pums
from tests.sandbox.jobkit import approve, events

DIMENSIONS = ("age", "sex", "educ", "race", "married")
POLICY: dict[str, Any] = {
    **PUMS_POLICY,
    "columns": {"pums": dict.fromkeys(DIMENSIONS, "dimension") | {"income": "measure"}},
    "job_kinds": ["query", "stats"],
}
# The crosstab of issue 12: it held a web worker for 30 s, and a real job for minutes at 4 GB.
HEAVY = {
    "op": "crosstab",
    "dataset": "pums",
    "index": ["age", "educ"],
    "columns": ["race", "sex", "married"],
    "margins": True,
    "values": "income",
    "aggfunc": ["sum", "count"],
}
NORMAL = {"op": "crosstab", "dataset": "pums", "index": ["race"], "columns": ["sex"], "margins": True, "values": "income"}


def grant_with(world: World, pums: dict[str, Any], policy: dict[str, Any]) -> str:
    body = {"dataset_ids": [pums["id"]], "scenario": "Cost limits", "requested": {"job_kinds": ["query", "stats"]}}
    grant_id = str(world.client.post("/api/v1/grants", headers=auth(world.analyst), json=body).json["id"])
    approve(world, grant_id, policy)
    return grant_id


def post(world: World, grant_id: str, kind: str, spec: dict[str, Any], path: str = "/api/v1/jobs") -> Any:
    body: dict[str, Any] = {"grant_id": grant_id, "kind": kind, "spec": spec}
    if path.endswith("dry-run"):
        body |= {"rows": 200, "seed": 1}
    return world.client.post(path, headers=auth(world.analyst), json=body)


def jobs_in_db(app: Flask) -> int:
    with get_db_of(app).sessions() as session:
        return session.query(Job).count()


def test_the_issues_crosstab_is_refused_at_submission_quickly(world: World, app: Flask, pums: dict[str, Any]) -> None:
    grant_id = grant_with(world, pums, POLICY)
    started = time.monotonic()
    response = post(world, grant_id, "stats", HEAVY)
    assert time.monotonic() - started < 5  # the planning only; the job itself took minutes
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "too_expensive"
    # PUMS has 1,000 rows; the catalogue shows 1,000, so at most 1,005: 15,639 groups over the 32 grouping sets.
    assert error["details"] == {"limit": "max_suppression_cells", "estimate": 15_639, "max": 5_000}
    assert "max_suppression_cells = 5000" in error["message"]
    assert jobs_in_db(app) == 0
    refused = [e for e in events(world) if e["action"] == "job.refused"]
    assert [(e["details"]["rule"], e["details"]["limit"]) for e in refused] == [("too_expensive", "max_suppression_cells")]


def test_a_normal_crosstab_passes(world: World, app: Flask, pums: dict[str, Any]) -> None:
    grant_id = grant_with(world, pums, POLICY)
    response = post(world, grant_id, "stats", NORMAL)
    assert response.status_code == 202, response.json
    assert jobs_in_db(app) == 1


def test_a_dry_run_is_refused_as_the_submission_would_be(world: World, pums: dict[str, Any]) -> None:
    """200 mock rows would fit the dry run's own cap; the policy's cap on the real data refuses it first."""
    grant_id = grant_with(world, pums, POLICY)
    response = post(world, grant_id, "stats", HEAVY, "/api/v1/jobs/dry-run")
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["limit"] == "max_suppression_cells"


def test_without_secondary_suppression_the_cap_on_cells_applies(world: World, pums: dict[str, Any]) -> None:
    policy = {**POLICY, "disclosure": {"secondary_suppression": False}, "limits": {"max_cells": 30_000}}
    grant_id = grant_with(world, pums, policy)
    response = post(world, grant_id, "stats", HEAVY)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"] == {"limit": "max_cells", "estimate": 2 * 15_639, "max": 30_000}
    assert post(world, grant_id, "stats", {**HEAVY, "aggfunc": ["sum"]}).status_code == 202


def test_the_steward_can_raise_the_caps(world: World, pums: dict[str, Any]) -> None:
    grant_id = grant_with(world, pums, {**POLICY, "limits": {"max_suppression_cells": 20_000}})
    assert post(world, grant_id, "stats", HEAVY).status_code == 202


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({**NORMAL, "index": ["race", "educ"], "columns": ["sex"]}, "stats"),
        ({"sql": "SELECT race, educ, sex, COUNT(*) AS n FROM pums GROUP BY race, educ, sex"}, "query"),
    ],
    ids=["crosstab", "query"],
)
def test_dimensions_per_table_are_capped(world: World, pums: dict[str, Any], spec: dict[str, Any], kind: str) -> None:
    grant_id = grant_with(world, pums, {**POLICY, "limits": {"max_dimensions": 2}})
    response = post(world, grant_id, kind, spec)
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"] == {"limit": "max_dimensions", "estimate": 3, "max": 2}


def test_a_query_is_estimated_from_its_keys_columns(world: World, pums: dict[str, Any]) -> None:
    """age (0..100, or missing: 102 values) x race (6 + missing): 714 groups, two aggregates."""
    grant_id = grant_with(world, pums, {**POLICY, "limits": {"max_cells": 1_427}})
    sql = "SELECT age, race, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY age, race"
    response = post(world, grant_id, "query", {"sql": sql})
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"] == {"limit": "max_cells", "estimate": 1_428, "max": 1_427}
    assert post(world, grant_id, "query", {"sql": sql.replace(", SUM(income) AS total", "")}).status_code == 202


@given(st.integers(0, 10**9), st.sampled_from([1, 5, 10, 100]))
def test_the_rows_an_estimate_uses_follow_from_the_catalogue_alone(count: int, base: int) -> None:
    """A bound on the rows, never below them, that is the same for every count the catalogue shows alike."""
    bound = public_rows(count, base)
    assert bound >= count
    shown = catalogue_count(count, base)
    assert bound == shown + base // 2


# --- while it runs: the suppression programmes obey the policy's cap and time limit, and stop when asked ----


def stats_run(limits: dict[str, Any], interrupt: threading.Event | None = None) -> Outcome:
    """An in-process run of a 316-cell crosstab with margins (age x race) whose suppression needs programmes."""
    policy = Policy.model_validate({**POLICY, "limits": limits})
    spec = {**NORMAL, "index": ["age"], "columns": ["race"], "aggfunc": ["count"]}
    plan = plan_stats(spec, policy, SCHEMAS)
    ref = DatasetRef("pums", "v1", SCHEMAS["pums"], True)
    definition = JobDefinition("j1", "o1", JobKind.STATS, spec, "", plan, (ref,), policy, RunLimits(60), None)
    tables = frames_to_tables(read_pums("PUMS_pid.csv"))
    return Executor(DuckDBEngine(), interrupt).run(definition, tables, DRY_RUN, lambda stage, progress: None)


def test_a_table_past_the_policys_suppression_cap_fails_before_any_programme() -> None:
    with pytest.raises(TooExpensive) as raised:
        stats_run({"max_suppression_cells": 100})
    assert raised.value.details["max_cells"] == 100


def test_the_suppression_programmes_stop_at_the_policys_time_limit() -> None:
    started = time.monotonic()
    with pytest.raises(TooExpensive) as raised:
        stats_run({"suppression_seconds": 0.001})
    assert raised.value.details == {"seconds": 0.001}
    assert time.monotonic() - started < 10


def test_a_stopped_run_interrupts_its_suppression_programmes() -> None:
    """In process, the worker's interrupt (cancelled, timed out) stops the programmes between solves."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(QueryInterrupted):
        stats_run({}, stop)


def test_within_the_limits_the_run_is_released_as_before() -> None:
    outcome = stats_run({})
    assert outcome.verdict is not None
    assert outcome.verdict.details["complements"] > 0
