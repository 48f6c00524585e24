"""Real worker processes: a worker killed with SIGKILL mid-job loses nothing, and the job is released once."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask
from sqlalchemy import func, select

from core.schema import DatasetMeta
from sandbox.db import get_db_of
from sandbox.models import Job, JobOutput, LedgerEvent, User
from sandbox.service.auth import principal_of
from tests.conftest import PUMS_META, PUMS_POLICY, World, auth, request_grant
from tests.processes import running
from tests.sandbox.test_runaway import HEAVY
from tests.sandbox.test_runaway import POLICY as RUNAWAY_POLICY

ROOT = Path(__file__).resolve().parents[2]
ROWS = 3_000_000
HEAVY_SQL = "SELECT age, COUNT(*) AS n, MEDIAN(income) AS median_income, AVG(income) AS mean_income FROM big GROUP BY age"


def _big_parquet() -> bytes:
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "age": rng.integers(0, 101, ROWS),
            "sex": rng.integers(0, 2, ROWS),
            "educ": rng.integers(1, 17, ROWS),
            "race": rng.integers(1, 7, ROWS),
            "income": rng.integers(0, 500_001, ROWS),
            "married": rng.integers(0, 2, ROWS),
            "pid": np.arange(1, ROWS + 1),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _worker(app: Flask) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A worker process on the test's instance, stopped (its process group killed if need be) when the block ends."""
    env = {
        **os.environ,
        "SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"],
        "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"],
        "SANDBOX_WORKER_LEASE_SECONDS": "1",
        "SANDBOX_WORKER_POLL_SECONDS": "0.02",
    }
    log = Path(app.config["INSTANCE_PATH"]).parent / "worker.log"
    return running([sys.executable, "-m", "sandbox", "worker"], cwd=ROOT, env=env, log=log)


def _job(app: Flask, job_id: str) -> Job:
    with get_db_of(app).sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _wait_for(app: Flask, job_id: str, predicate: Any, timeout: float, step: float = 0.005) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(app, job_id)
        if predicate(job):
            return job
        time.sleep(step)
    pytest.fail(f"job {job_id} did not reach the expected state; last: {job.status}/{job.stage}")


@pytest.mark.slow
def test_sigkill_mid_job_loses_nothing_and_releases_once(world: World, app: Flask) -> None:
    with get_db_of(app).sessions() as session:
        steward = session.scalar(select(User).where(User.role == "steward", User.name == "steward"))
        assert steward is not None
        principal = principal_of(steward)
    meta = DatasetMeta.model_validate({**PUMS_META, "name": "big", "title": "synthetic, seeded"})
    dataset = app.extensions["sandbox.datasets"].create(principal, meta, "big.parquet", _big_parquet())
    grant_id = request_grant(world, [dataset.id]).json["id"]
    policy = {**PUMS_POLICY, "columns": {"big": PUMS_POLICY["columns"]["pums"]}, "aggregates": ["count", "avg", "median"]}
    response = world.client.post(
        f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json={"policy": policy, "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.json
    job_id = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "query", "spec": {"sql": HEAVY_SQL}}
    ).json["id"]

    with _worker(app) as first:
        _wait_for(app, job_id, lambda j: j.status == "running", timeout=30)
        first.send_signal(signal.SIGKILL)  # the worker alone, as a crash would; its group is swept on the way out
        first.wait(10)
    killed = _job(app, job_id)
    assert killed.status in ("running", "checking"), "the first worker finished before it was killed"
    assert killed.attempts == 1

    with _worker(app) as second:
        done = _wait_for(app, job_id, lambda j: j.status not in ("queued", "running", "checking"), timeout=60, step=0.05)
    assert done.status == "released", done.reason
    assert done.attempts == 2
    with get_db_of(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(JobOutput).where(JobOutput.job_id == job_id)) == 1
        actions = list(session.scalars(select(LedgerEvent.action).where(LedgerEvent.object_id == job_id).order_by(LedgerEvent.seq)))
    assert actions.count("job.released") == 1
    assert actions[:2] == ["job.submit", "job.running"]
    assert "job.retry" in actions
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    assert len(result["rows"]) == 101
    assert second.returncode == 0  # SIGTERM: finish and stop cleanly


@pytest.mark.slow
def test_a_killed_workers_job_child_dies_with_it(world: World, app: Flask, pums: dict[str, Any]) -> None:
    """A worker SIGKILLed mid-job leaves no orphan computing its job (the soak found them: benchmarks/soak.py)."""
    grant_id = request_grant(world, [pums["id"]], ["query", "stats"]).json["id"]
    response = world.client.post(
        f"/api/v1/grants/{grant_id}/approve",
        headers=auth(world.steward),
        json={"policy": RUNAWAY_POLICY, "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.json
    spec = {**HEAVY, "timeout_seconds": 120}  # its suppression LP runs for minutes
    job_id = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "stats", "spec": spec}
    ).json["id"]
    log = Path(app.config["INSTANCE_PATH"]).parent / "worker.log"
    with _worker(app) as worker:
        child = _child_pid(log, job_id, timeout=120)  # the first job of a worker starts its forkserver
        _wait_for(app, job_id, lambda j: j.status == "checking", timeout=60, step=0.05)
        time.sleep(1)  # inside the suppression LP, where the child has nothing to ask its worker (a dead worker's pipe would stop it)
        worker.send_signal(signal.SIGKILL)  # the worker alone, as a crash would
        worker.wait(10)
        deadline = time.monotonic() + 30  # the forkserver notices, exits; the kernel signals (slow only on a loaded machine)
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the job's child computes on after its worker died"


def _child_pid(log: Path, job_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(rf"job {job_id} runs in child process (\d+)", log.read_text() if log.exists() else "")
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    pytest.fail("the worker did not start the job's child")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_worker_that_cannot_start_job_children_says_so_at_start_and_claims_nothing(
    world: World, app: Flask, pums: dict[str, Any]
) -> None:
    """As when the worker's user cannot execute its interpreter again: refused before any job is claimed."""
    grant_id = request_grant(world, [pums["id"]]).json["id"]
    decision = {"policy": PUMS_POLICY, "expires_at": "2099-01-01T00:00:00Z"}
    approved = world.client.post(f"/api/v1/grants/{grant_id}/approve", headers=auth(world.steward), json=decision)
    assert approved.status_code == 200, approved.json
    spec = {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
    job = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "query", "spec": spec})
    assert job.status_code in (201, 202), job.json
    env = {**os.environ, "SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    program = (
        "import multiprocessing; multiprocessing.set_executable('/nonexistent/python'); "
        "from sandbox.cli import main; main(['worker', '--once'])"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "the worker cannot run jobs: cannot start job child processes" in done.stderr
    assert world.client.get(f"/api/v1/jobs/{job.json['id']}", headers=auth(world.analyst)).json["status"] == "queued"


def test_a_worker_starts_its_job_children_before_it_claims() -> None:
    from sandbox.runtime import child

    assert 0 < child.preflight() < child.PREFLIGHT_SECONDS


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_worker_stopped_while_it_imports_ends_cleanly(app: Flask, stop: signal.Signals) -> None:
    """A service manager stopping a worker that is still starting (importing takes seconds) gets exit status 0."""
    env = {**os.environ, "SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    worker = subprocess.Popen([sys.executable, "-m", "sandbox", "worker"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the interpreter is up and imports the command line (over a second even on a quiet machine)
    worker.send_signal(stop)
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0, stderr
    assert "stopped while starting" in stderr
