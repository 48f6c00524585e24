"""Query jobs end to end on real PUMS data: pre-check, queue, worker, output control, release, review."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from flask import Flask

from core.values import JobKind
from jobs.engine import DuckDBEngine
from sandbox.app import instance_of
from sandbox.db import get_db_of
from sandbox.models import Job, JobOutput
from sandbox.runtime.worker import Worker
from sandbox.service import jobs as job_service
from tests.conftest import PUMS_META, PUMS_POLICY, World, auth, data_file, request_grant
from tests.sandbox.jobkit import RACE_SQL, approve, events, job_json, run_worker, submit


def test_race_query_releases_races_1_to_4_and_suppresses_5_and_6(world: World, app: Flask, approved: str) -> None:
    response = submit(world, approved, RACE_SQL)
    assert response.status_code == 202, response.json
    job_id = response.json["id"]
    assert response.json["status"] == "queued"
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 409
    assert run_worker(app) == 1
    job = job_json(world, job_id)
    assert job["status"] == "released"
    assert "suppressed" not in job["verdict"]  # the analyst reads no counts of withheld cells
    assert job_json(world, job_id, token=world.steward)["verdict"]["suppressed"] == 4
    assert job["run_seconds"] is not None
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    rows = {row["race"]: row for row in result["rows"]}
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    expected = pums.groupby("race").agg(n=("pid", "size"), mean_income=("income", "mean"))
    for race in (1, 2, 3, 4):
        assert rows[race]["n"] == expected.loc[race, "n"]
        assert rows[race]["mean_income"] == pytest.approx(expected.loc[race, "mean_income"])
    for race in (5, 6):
        assert rows[race]["n"] is None
        assert rows[race]["mean_income"] is None
    suppressed = {(result["rows"][n["row"]]["race"], n["column"]) for n in result["notes"]}
    assert suppressed == {(5, "n"), (5, "mean_income"), (6, "n"), (6, "mean_income")}
    assert all(n["rule"] == "output_control" and n["status"] == "withheld" for n in result["notes"])
    assert "__units_0" not in result["rows"][0]


def test_threshold_counts_persons_not_rows(world: World, app: Flask) -> None:
    dup = pd.read_csv(data_file("smartnoise-sdk/PUMS_dup.csv"))
    per_race = dup.groupby("race").agg(rows=("pid", "size"), persons=("pid", "nunique"))
    tricky = per_race[(per_race.rows >= 10) & (per_race.persons < 10)]
    assert not tricky.empty, "PUMS_dup should have a race with >= 10 rows but < 10 persons"
    meta = copy.deepcopy(PUMS_META) | {"name": "pums_dup"}
    assert world.upload(world.steward, meta, data_file("smartnoise-sdk/PUMS_dup.csv")).status_code == 201
    dataset_id = world.client.get("/api/v1/datasets", headers=auth(world.analyst)).json["items"][0]["id"]
    grant_id = request_grant(world, [dataset_id]).json["id"]
    approve(world, grant_id, {**PUMS_POLICY, "columns": {"pums_dup": PUMS_POLICY["columns"]["pums"]}})
    job_id = submit(world, grant_id, "SELECT race, COUNT(*) AS n FROM pums_dup GROUP BY race").json["id"]
    run_worker(app)
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    rows = {row["race"]: row["n"] for row in result["rows"]}
    for race in tricky.index:
        assert rows[race] is None
    for race, stats in per_race[per_race.persons >= 10].iterrows():
        assert rows[race] == stats.rows


def test_policy_precheck_is_a_422_naming_rule_and_column(world: World, app: Flask, approved: str) -> None:
    response = submit(world, approved, "SELECT race, income FROM pums")
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "policy_violation"
    assert "income" in error["message"]
    assert error["details"]["rule"]
    assert world.client.get("/api/v1/jobs", headers=auth(world.analyst)).json["items"] == []
    refused = [e for e in events(world) if e["action"] == "job.refused"]
    assert len(refused) == 1
    assert refused[0]["details"]["rule"] == error["details"]["rule"]


def test_jobs_are_private_to_their_owner(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    run_worker(app)
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/result"):
        assert world.client.get(path, headers=auth(world.other_analyst)).status_code == 404
    assert world.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(world.other_analyst)).status_code == 404
    assert world.client.get(f"/api/v1/jobs/{job_id}", headers=auth(world.steward)).status_code == 200
    assert world.client.get(f"/api/v1/jobs/{job_id}", headers=auth(world.other_steward)).status_code == 404
    assert world.client.get(f"/api/v1/jobs/{job_id}", headers=auth(world.auditor)).status_code == 200
    assert submit(world, approved, RACE_SQL, token=world.other_analyst).status_code == 404


def test_every_transition_is_on_the_ledger_without_values(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    run_worker(app)
    job_events = [e for e in events(world) if e["object_id"] == job_id]
    assert [e["action"] for e in job_events] == ["job.submit", "job.running", "job.checking", "job.released"]
    for event in job_events:
        details = event["details"]
        assert len(details["spec_sha256"]) == 64
        assert details["policy_version"] == 1
        assert details["dataset_versions"]["pums"]["number"] == 1
    assert job_events[-1]["details"]["verdict"]["suppressed"] == 4
    text = str(events(world))
    assert RACE_SQL not in text
    for value in ("56000", "34380084"):
        assert value not in text
    assert world.client.get("/api/v1/audit/verify", headers=auth(world.auditor)).json["ok"] is True


def test_all_cells_suppressed_is_blocked(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, "SELECT race, COUNT(*) AS n FROM pums WHERE race = 5 GROUP BY race").json["id"]
    run_worker(app)
    job = job_json(world, job_id)
    assert job["status"] == "blocked"
    assert job["reason"] == "withheld by output control"  # the stored reason is the auditors'
    assert job_json(world, job_id, token=world.steward)["reason"] == "no cell passed output control"
    response = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert response.status_code == 409
    assert response.json["error"]["details"]["status"] == "blocked"


def test_raw_output_is_kept_sealed_for_auditors(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    run_worker(app)
    with get_db_of(app).sessions() as session:
        output = session.get(JobOutput, job_id)
        assert output is not None
        assert output.raw[:4] == b"SBXE"
        assert output.released[:4] == b"SBXE"


def test_cancel_a_queued_job(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    response = world.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(world.analyst))
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    assert run_worker(app) == 0
    assert world.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(world.analyst)).status_code == 409


class GatedEngine:
    """DuckDB, but each run first waits at a gate: lets a test act while a job is mid-execution."""

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()

    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        self.entered.set()
        while not self.gate.wait(0.01):
            if interrupt is not None and interrupt.is_set():
                from jobs.engine import QueryInterrupted

                raise QueryInterrupted("interrupted at the gate")
        return DuckDBEngine().run(sql, tables, interrupt)


def _run_in_thread(app: Flask, engine: GatedEngine) -> threading.Thread:
    thread = threading.Thread(target=run_worker, args=(app, engine), daemon=True)
    thread.start()
    assert engine.entered.wait(10)
    return thread


@pytest.mark.usefixtures("approved")
def test_cancel_a_running_job(world: World, app: Flask, approved: str) -> None:
    app.config["WORKER_LEASE_SECONDS"] = 0.3
    job_id = submit(world, approved, RACE_SQL).json["id"]
    engine = GatedEngine()
    thread = _run_in_thread(app, engine)
    assert job_json(world, job_id)["status"] == "running"
    assert world.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(world.analyst)).status_code == 200
    thread.join(10)
    job = job_json(world, job_id)
    assert job["status"] == "cancelled"
    with get_db_of(app).sessions() as session:
        assert session.get(JobOutput, job_id) is None


def test_timeout_fails_the_job(world: World, app: Flask, approved: str) -> None:
    app.config["WORKER_LEASE_SECONDS"] = 0.3
    job_id = submit(world, approved, RACE_SQL, timeout_seconds=1).json["id"]
    engine = GatedEngine()
    thread = _run_in_thread(app, engine)
    thread.join(10)
    job = job_json(world, job_id)
    assert job["status"] == "failed"
    assert job["reason"] == "the job exceeded its time limit"


def test_revoked_grant_fails_a_queued_job(world: World, app: Flask, approved: str) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    world.client.post(f"/api/v1/grants/{approved}/revoke", headers=auth(world.steward), json={"reason": "consent withdrawn"})
    run_worker(app)
    job = job_json(world, job_id)
    assert job["status"] == "failed"
    assert "revoked" in job["reason"]


def test_revoked_or_requested_grant_refuses_submission(world: World, grant: dict[str, Any]) -> None:
    assert submit(world, grant["id"], RACE_SQL).status_code == 403
    approve(world, grant["id"])
    world.client.post(f"/api/v1/grants/{grant['id']}/revoke", headers=auth(world.steward), json={"reason": "consent withdrawn"})
    response = submit(world, grant["id"], RACE_SQL)
    assert response.status_code == 403
    assert "revoked" in response.json["error"]["message"]


def test_unavailable_kind_and_bad_spec_are_400(world: World, approved: str) -> None:
    bad_spec = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": approved, "kind": "query", "spec": {"query": "x"}}
    )
    assert bad_spec.status_code == 400
    bad_sql = submit(world, approved, "SELEC race FROM")
    assert bad_sql.status_code == 400


def test_dry_run_uses_mock_data_and_queues_nothing(world: World, approved: str) -> None:
    response = world.client.post(
        "/api/v1/jobs/dry-run",
        headers=auth(world.analyst),
        json={"grant_id": approved, "kind": "query", "spec": {"sql": RACE_SQL}, "rows": 500, "seed": 3},
    )
    assert response.status_code == 200, response.json
    assert response.json["synthetic"] is True
    assert {row["race"] for row in response.json["rows"]} <= {1, 2, 3, 4, 5, 6}
    assert world.client.get("/api/v1/jobs", headers=auth(world.analyst)).json["items"] == []
    assert "job.submit" not in [e["action"] for e in events(world)]
    refused = world.client.post(
        "/api/v1/jobs/dry-run",
        headers=auth(world.analyst),
        json={"grant_id": approved, "kind": "query", "spec": {"sql": "SELECT income FROM pums"}},
    )
    assert refused.status_code == 422


ORDERED_SQL = "SELECT race, COUNT(*) AS n, AVG(income) AS avg_income FROM pums GROUP BY race"  # not alphabetical


def test_a_dry_run_and_a_result_keep_the_querys_column_order(world: World, app: Flask, approved: str) -> None:
    """Columns and each row's keys come in the query's order (race, n, avg_income), not sorted, in the JSON as sent."""
    body = {"grant_id": approved, "kind": "query", "spec": {"sql": ORDERED_SQL}, "rows": 300, "seed": 1}
    dry = world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)
    assert dry.status_code == 200, dry.json
    job_id = submit(world, approved, ORDERED_SQL).json["id"]
    assert run_worker(app) == 1
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst))
    assert result.status_code == 200, result.json
    for response in (dry, result):
        assert [c["name"] for c in response.json["columns"]] == ["race", "n", "avg_income"]
        rows = json.loads(response.get_data(as_text=True), object_pairs_hook=list)
        rows = dict(rows)["rows"]
        assert rows
        assert all([key for key, _ in row] == ["race", "n", "avg_income"] for row in rows)


def test_job_row_records_pinned_versions(world: World, app: Flask, approved: str, pums: dict[str, Any]) -> None:
    job_id = submit(world, approved, RACE_SQL).json["id"]
    with get_db_of(app).sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.dataset_versions == {"pums": {"version_id": pums["versions"][0]["id"], "number": 1}}


def test_parallel_workers_run_each_job_once(world: World, app: Flask, approved: str) -> None:
    ids = [submit(world, approved, RACE_SQL).json["id"] for _ in range(8)]
    threads = [threading.Thread(target=run_worker, args=(app,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with get_db_of(app).sessions() as session:
        jobs = [session.get(Job, job_id) for job_id in ids]
        assert all(job is not None and job.status == "released" and job.attempts == 1 for job in jobs)
    released = [e["object_id"] for e in events(world) if e["action"] == "job.released"]
    assert sorted(released) == sorted(ids)


def test_unexpected_failures_log_no_data(world: World, app: Flask, approved: str, caplog: pytest.LogCaptureFixture) -> None:
    class Leaky:
        def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
            value = 50_000 + 6_000  # a data value, as a library's message might quote it
            raise RuntimeError(f"could not convert value {value} in row 7")

    job_id = submit(world, approved, RACE_SQL).json["id"]
    Worker(instance_of(app), engine=Leaky()).run(once=True)
    job = job_json(world, job_id)
    assert job["status"] == "failed"
    assert "56000" not in job["reason"]
    assert "RuntimeError" in caplog.text
    assert "56000" not in caplog.text


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/dry-run"])
def test_nul_characters_are_bad_input_on_every_backend(world: World, approved: str, path: str) -> None:
    body = {"grant_id": approved + "\x00", "kind": "query", "spec": {"sql": "SELECT COUNT(*) AS n FROM pums\x00"}}
    response = world.client.post(path, headers=auth(world.analyst), json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"
    assert world.client.get("/api/v1/jobs/abc%00def", headers=auth(world.analyst)).status_code == 404
    assert world.client.get("/api/v1/jobs?status=held%00", headers=auth(world.analyst)).status_code == 400


@pytest.mark.parametrize("status", ["running", "held", "failed", "released"])
def test_a_started_script_job_answers_a_cancel_the_same_whatever_its_real_state(
    world: World, app: Flask, approved: str, status: str
) -> None:
    """Within a script's time limit its analyst sees it running (``analyst_view``): a cancel must not tell more."""
    job_id = submit(world, approved, RACE_SQL).json["id"]
    with get_db_of(app).writing() as session:  # a script job that started a moment ago and is, in truth, ``status``
        job = session.get(Job, job_id)
        assert job is not None
        job.kind, job.status, job.started_at = JobKind.SCRIPT.value, status, datetime.now(UTC)
    response = world.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(world.analyst))
    assert response.status_code == 409
    assert response.json["error"]["message"] == job_service.SCRIPT_STARTED
    assert not response.json["error"].get("details")
    with get_db_of(app).sessions() as session:
        stored = session.get(Job, job_id)
        assert stored is not None
        assert (stored.status, stored.cancel_requested) == (status, False)


def test_an_analysts_status_filter_applies_to_a_script_job_as_shown(world: World, app: Flask, approved: str) -> None:
    """A script job held a moment after it started shows running: ``?status=held`` must not list it before its time limit."""
    job_id = submit(world, approved, RACE_SQL).json["id"]
    with get_db_of(app).writing() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.kind, job.status, job.started_at = JobKind.SCRIPT.value, "held", datetime.now(UTC)

    def listed(status: str) -> list[str]:
        response = world.client.get(f"/api/v1/jobs?status={status}", headers=auth(world.analyst))
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]

    assert job_id not in listed("held")
    assert job_id in listed("running")
    steward = world.client.get("/api/v1/jobs?status=held", headers=auth(world.steward)).json["items"]
    assert job_id in [item["id"] for item in steward]  # the bureau sees the stored status, as before
