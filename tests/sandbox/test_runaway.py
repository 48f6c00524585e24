"""Runaway work and hostile input: dry runs and jobs run in a killable child under limits, and fail cleanly."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime.child import JOB_NICENESS
from tests.conftest import PUMS_POLICY, World, auth
from tests.sandbox.jobkit import approve, events, job_json, run_worker

POLICY: dict[str, Any] = {
    **PUMS_POLICY,
    "columns": {
        "pums": {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "married": "dimension"}
        | {"income": "measure"}
    },
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["query", "stats"],
    # Past the default cap on secondary suppression (``test_cost_limits``): raised, so that the heavy
    # crosstab reaches the runtime limits tested here.
    "limits": {"max_suppression_cells": 100_000},
}
HEAVY = {
    "op": "crosstab",
    "dataset": "pums",
    "index": ["age", "educ"],
    "columns": ["race", "sex", "married"],
    "margins": True,
    "values": "income",
    "aggfunc": ["sum", "count"],
}
BAD_CAST = "SELECT YEAR(CAST(age AS VARCHAR)) AS y, COUNT(*) AS n FROM pums GROUP BY YEAR(CAST(age AS VARCHAR))"
TIMEOUT_REASON = "the job exceeded its time limit"
MARGIN = 5.0  # seconds: a loaded test machine, the child's start and SIGKILL


@pytest.fixture
def grant(world: World, pums: dict[str, Any]) -> str:
    body = {"dataset_ids": [pums["id"]], "scenario": "Runaway work", "requested": {"job_kinds": ["query", "stats"]}}
    grant_id = str(world.client.post("/api/v1/grants", headers=auth(world.analyst), json=body).json["id"])
    approve(world, grant_id, POLICY)
    return grant_id


def dry_run(world: World, grant_id: str, kind: str, spec: dict[str, Any], rows: int = 3000) -> Any:
    body = {"grant_id": grant_id, "kind": kind, "spec": spec, "rows": rows, "seed": 1}
    return world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=body)


def submit(world: World, grant_id: str, kind: str, spec: dict[str, Any]) -> str:
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": kind, "spec": spec})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def child_pids(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(p) for p in re.findall(r"runs in child process (\d+)", caplog.text)]


def wait_for_set_up(pid: int, seconds: float = 60) -> None:
    """Until the job's child has set itself up: its last step is its CPU time limit (signals, priority and memory come first).

    A fixed sleep is not enough: on a busy machine a new child can take seconds to get a CPU. Nor is its
    priority: it is born at the forkserver's, which is already the job children's.
    """
    deadline = time.monotonic() + seconds
    while not _cpu_limited(pid):
        assert time.monotonic() < deadline, f"the job's child {pid} did not set itself up within {seconds} s"
        time.sleep(0.01)


def _cpu_limited(pid: int) -> bool:
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    (line,) = [line for line in limits if line.startswith("Max cpu time")]
    return line.split()[3] != "unlimited"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_heavy_dry_run_is_refused_before_it_runs(world: World, grant: str) -> None:
    started = time.monotonic()
    response = dry_run(world, grant, "stats", HEAVY)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "too_expensive"
    details = response.json["error"]["details"]
    assert details["limit"] == "dry_run_max_cells"
    assert details["estimate"] > details["max"] == 20_000
    assert time.monotonic() - started < 2
    assert world.client.get("/api/v1/healthz").status_code == 200


@pytest.mark.slow
def test_a_dry_run_past_its_time_limit_answers_timeout_quickly(world: World, app: Flask, grant: str) -> None:
    warm = dry_run(world, grant, "stats", {**HEAVY, "index": ["sex"], "columns": ["race"]}, rows=50)  # starts the forkserver
    assert warm.status_code == 200, warm.json
    app.config.update(DRY_RUN_TIMEOUT_SECONDS=1, DRY_RUN_MAX_CELLS=10**9)
    started = time.monotonic()
    response = dry_run(world, grant, "stats", HEAVY)
    assert response.status_code == 422, response.json
    assert response.json["error"] == {"code": "timeout", "message": TIMEOUT_REASON, "details": {"timeout_seconds": 1}}
    assert time.monotonic() - started < 1 + MARGIN
    assert world.client.get("/api/v1/healthz").status_code == 200


def test_an_engine_error_in_a_dry_run_is_a_clean_422(world: World, grant: str, caplog: pytest.LogCaptureFixture) -> None:
    response = dry_run(world, grant, "query", {"sql": BAD_CAST}, rows=50)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "job_failed"
    assert "its message is withheld" in response.json["error"]["message"]
    assert "BinderException" in caplog.text  # the operator learns the type...
    assert "No function matches" not in caplog.text  # ...never the engine's message, which can quote values


def test_an_engine_error_in_a_job_fails_it_with_a_fixed_reason(world: World, app: Flask, grant: str) -> None:
    job_id = submit(world, grant, "query", {"sql": BAD_CAST})
    run_worker(app)
    job = job_json(world, job_id)
    assert (job["status"], job["reason"]) == ("failed", "the job failed inside the sandbox; the operator has the details")
    failed = [e for e in events(world) if e["action"] == "job.failed" and e["object_id"] == job_id]
    assert failed[0]["details"]["cause"] == "error: BinderException"


@pytest.mark.slow
def test_a_job_past_its_timeout_is_killed_keeps_its_lease_and_runs_once(
    world: World, app: Flask, grant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.runtime.child")
    lease = 0.6
    app.config["WORKER_LEASE_SECONDS"] = lease
    job_id = submit(world, grant, "stats", {**HEAVY, "timeout_seconds": 2})
    started = time.monotonic()
    run_worker(app)
    assert time.monotonic() - started < 2 + MARGIN + 4  # + the forkserver's first start
    job = job_json(world, job_id)
    assert (job["status"], job["reason"], job["attempts"]) == ("failed", TIMEOUT_REASON, 1)
    with get_db_of(app).sessions() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert row.started_at is not None
        assert row.heartbeat_at is not None
        # renewed until the child was dead: the lease (0.6 s) still held when the timeout (2 s) came
        assert row.heartbeat_at + timedelta(seconds=lease) > row.started_at + timedelta(seconds=2)
    assert [e["details"].get("cause") for e in events(world) if e["object_id"] == job_id and e["action"] == "job.failed"] == ["timeout"]
    (pid,) = child_pids(caplog)
    assert gone(pid)


def signal_the_child_mid_run(
    world: World, app: Flask, grant: str, caplog: pytest.LogCaptureFixture, sig: signal.Signals, timeout_seconds: int
) -> tuple[str, int]:
    """Submit the heavy job, send ``sig`` to its child half a second into the run, wait for the worker: the job and the child."""
    caplog.set_level(logging.INFO, logger="sandbox.runtime.child")
    job_id = submit(world, grant, "stats", {**HEAVY, "timeout_seconds": timeout_seconds})
    worker = threading.Thread(target=run_worker, args=(app,))
    worker.start()
    deadline = time.monotonic() + 20
    while not child_pids(caplog) and time.monotonic() < deadline:
        time.sleep(0.02)
    (pid,) = child_pids(caplog)
    wait_for_set_up(pid)
    time.sleep(0.2)  # inside the run
    os.kill(pid, sig)
    worker.join(20)
    return job_id, pid


@pytest.mark.slow
def test_a_jobs_child_runs_at_a_lower_priority_than_its_worker(
    world: World, app: Flask, grant: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Analysis work yields the CPU to the API and to the worker's heartbeat: its child is niced."""
    caplog.set_level(logging.INFO, logger="sandbox.runtime.child")
    submit(world, grant, "stats", {**HEAVY, "timeout_seconds": 60})
    worker = threading.Thread(target=run_worker, args=(app,))
    worker.start()
    deadline = time.monotonic() + 20
    while not child_pids(caplog) and time.monotonic() < deadline:
        time.sleep(0.02)
    (pid,) = child_pids(caplog)
    try:
        wait_for_set_up(pid)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + JOB_NICENESS, 19)
        assert os.getpriority(os.PRIO_PROCESS, 0) < os.getpriority(os.PRIO_PROCESS, pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        worker.join(20)


def test_the_forkserver_imports_its_heavy_modules_at_the_job_childrens_priority() -> None:
    """Its preload costs seconds of CPU at every worker or web process start: that yields to the API too."""
    code = (
        "import os, multiprocessing.forkserver as f\n"
        "from sandbox.runtime import child\n"
        "child.preflight()\n"
        "print(os.getpriority(os.PRIO_PROCESS, f._forkserver._forkserver_pid) - os.getpriority(os.PRIO_PROCESS, 0))\n"
    )
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert int(result.stdout) == min(mine + JOB_NICENESS, 19) - mine


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "reason", "cause"),
    [
        (signal.SIGKILL, "the job exceeded its memory limit", "killed: SIGKILL"),  # as the kernel's OOM killer does
        (signal.SIGSEGV, "the job failed inside the sandbox; the operator has the details", "died: signal SIGSEGV"),
    ],
    ids=["oom-killed", "segfault"],
)
def test_a_child_that_dies_fails_its_job_with_a_fixed_reason(
    world: World, app: Flask, grant: str, caplog: pytest.LogCaptureFixture, sig: signal.Signals, reason: str, cause: str
) -> None:
    job_id, _ = signal_the_child_mid_run(world, app, grant, caplog, sig, timeout_seconds=60)
    job = job_json(world, job_id, world.auditor)
    assert (job["status"], job["reason"], job["attempts"]) == ("failed", reason, 1)
    assert job_json(world, job_id)["reason"] == "the job failed inside the sandbox; the operator has the details"  # the analyst's
    assert [e["details"].get("cause") for e in events(world) if e["object_id"] == job_id and e["action"] == "job.failed"] == [cause]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_only_the_worker_ends_a_run_a_service_wide_stop_signal_does_not(
    world: World, app: Flask, grant: str, caplog: pytest.LogCaptureFixture, sig: signal.Signals
) -> None:
    """A service manager signals every process of the service; the worker finishes its job up to its time limit."""
    job_id, pid = signal_the_child_mid_run(world, app, grant, caplog, sig, timeout_seconds=8)
    job = job_json(world, job_id, world.auditor)
    assert (job["status"], job["reason"]) == ("failed", TIMEOUT_REASON)  # it ran on to its limit
    assert [e["details"].get("cause") for e in events(world) if e["object_id"] == job_id and e["action"] == "job.failed"] == ["timeout"]
    assert gone(pid)
