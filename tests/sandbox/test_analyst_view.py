"""What an analyst reads of a job is data-blind: one withheld status, fixed reasons, coarse timings.

A hostile analyst learns from every channel, not only values: which rule withheld a cell (threshold
or dominance says how many people, secondary suppression says the cell itself was safe), how many
cells were complementary suppressions, a library's failure message, a run time to the microsecond.
Auditors read all of it; the analyst reads the status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask

from core.values import JobStatus
from policies.lp_audit import SUPPRESSION_TOO_LONG
from sandbox.api import analyst_view as view
from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime import audited
from sandbox.runtime.child import FAILED_REASON, MEMORY_REASON, TIMEOUT_REASON
from tests.conftest import PUMS_POLICY, World, auth
from tests.sandbox.jobkit import approve, job_json, run_worker, submit

# Race 5 has one person (threshold), and a first total by sex makes a second by sex without race 5
# a release-audit finding: two different rules withhold cells of the analyst's results.
BY_RACE = "SELECT race, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY race ORDER BY race"
BY_SEX = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums {where} GROUP BY sex ORDER BY sex"


def _result(world: World, job_id: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_withheld_cells_of_different_rules_look_alike(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "auto"})
    by_race = submit(world, grant["id"], BY_RACE).json["id"]
    submit(world, grant["id"], BY_SEX.format(where=""))
    run_worker(app)
    by_sex = submit(world, grant["id"], BY_SEX.format(where="WHERE race <> 5")).json["id"]
    run_worker(app)

    # the release audit withholds the second job's cells (all of them: blocked, or some: released)
    second = job_json(world, by_sex)
    assert second["status"] in {"released", "blocked"}
    jobs = [by_race] + ([by_sex] if second["status"] == "released" else [])
    withheld = []
    for job_id in jobs:
        assert job_json(world, job_id)["status"] == "released"
        result = _result(world, job_id)
        withheld += [n for n in result["notes"] if n["status"] != "pass"]
        assert not set(result["summary"]) & view.DISCLOSURE_KEYS, result["summary"]
        assert result["summary"]["withheld"] == sum(1 for n in result["notes"] if n["status"] == view.WITHHELD)
    assert withheld, "the jobs withhold cells"
    assert {(n["status"], n["rule"], n["reason"]) for n in withheld} == {(view.WITHHELD, "output_control", view.WITHHELD_REASON)}
    if second["status"] == "blocked":
        assert second["reason"] == view.WITHHELD_REASON
        assert job_json(world, by_sex, token=world.steward)["reason"] != view.WITHHELD_REASON  # the auditors' detail

    # the auditor's record keeps the rules apart (threshold for race 5, the release audit for the second job)
    rules = {note["rule"] for job_id in jobs for note in _stored_notes(app, job_id) if note["status"] != "pass"}
    assert "threshold" in rules, rules
    assert second["status"] == "blocked" or audited.RULE in rules, rules


def _stored_notes(app: Flask, job_id: str) -> list[dict[str, Any]]:
    from sandbox.keys import get_keys_of
    from sandbox.models import JobOutput
    from sandbox.runtime import outputs

    with get_db_of(app).sessions() as session:
        output = session.get(JobOutput, job_id)
        assert output is not None
        return list(outputs.open_released(get_keys_of(app), output)["notes"])


def test_the_analyst_reads_a_fixed_reason_and_whole_seconds_the_auditor_reads_the_detail(
    world: World, app: Flask, grant: dict[str, Any]
) -> None:
    approve(world, grant["id"], PUMS_POLICY)
    job_id = submit(world, grant["id"], BY_RACE).json["id"]
    detail = "3 cells below threshold 10; dominance on race=5 (56000)"
    started = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    with get_db_of(app).writing() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.reason = JobStatus.BLOCKED.value, detail
        job.started_at, job.finished_at = started, datetime(2026, 12, 7, 10, 0, 2, 654321, tzinfo=UTC)
        job.verdict = {"status": "fail", "suppressed": 3, "flagged": 1, "complementary": 2}

    seen = job_json(world, job_id)
    assert seen["reason"] == view.WITHHELD_REASON
    assert "56000" not in str(seen)
    assert seen["verdict"] == {"status": "fail"}
    assert seen["run_seconds"] == 3.0  # 2.530864 s, rounded up
    assert datetime.fromisoformat(seen["started_at"]).microsecond == 0
    assert datetime.fromisoformat(seen["finished_at"]).microsecond == 0
    listed = world.client.get("/api/v1/jobs", headers=auth(world.analyst)).json["items"]
    assert [j["reason"] for j in listed if j["id"] == job_id] == [view.WITHHELD_REASON]
    conflict = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert conflict.status_code == 409
    assert conflict.json["error"]["details"]["reason"] == view.WITHHELD_REASON

    for token in (world.steward, world.auditor):
        full = job_json(world, job_id, token=token)
        assert full["reason"] == detail
        assert full["verdict"]["suppressed"] == 3
        assert full["run_seconds"] == 2.530865


def test_fixed_reasons_pass_and_data_reasons_do_not() -> None:
    assert view.reason(JobStatus.FAILED, TIMEOUT_REASON) == TIMEOUT_REASON
    assert view.reason(JobStatus.FAILED, MEMORY_REASON) == FAILED_REASON
    assert view.reason(JobStatus.FAILED, SUPPRESSION_TOO_LONG) == FAILED_REASON  # its timing depends on the data
    assert view.reason(JobStatus.CANCELLED, "cancelled by the analyst") == "cancelled by the analyst"
    assert view.reason(JobStatus.BLOCKED, "no cell passed output control") == view.WITHHELD_REASON
    assert view.reason(JobStatus.BLOCKED, "3 cells below threshold 10 (race=5: 1 unit)") == view.WITHHELD_REASON
    assert view.reason(JobStatus.HELD, "cells flagged for review") == view.reason(
        JobStatus.HELD, "the policy holds every output for review"
    )
    assert view.reason(JobStatus.REJECTED, "not in scope") == "not in scope"  # a reviewer's own words
    assert view.duration(0.2) == 1.0
    assert view.duration(None) is None
