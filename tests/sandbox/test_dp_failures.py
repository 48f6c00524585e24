"""On DP grants a failure is an answer too: every job that read the data spends its ε, whatever its end.

Whether a job fails, is cancelled by its worker's heartbeat, times out or is rejected can depend on
the data (memory, time, a reviewer's reading of the noisy answer). Free, such ends would be
noise-less one-bit oracles; so they spend like releases, once, in the transaction that ends the
job. A job that never started (cancelled while queued) spends nothing.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from core.values import JobStatus
from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime.queue import Queue
from sandbox.service import budget
from tests.conftest import World, auth
from tests.sandbox.jobkit import approve, events, job_json, run_worker, submit
from tests.sandbox.test_dp_jobs import COUNT_BY_RACE, budget_of, dp_policy
from tests.sandbox.test_jobs import GatedEngine


class Broken:
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")


@pytest.fixture
def dp_grant(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"], dp_policy())
    return str(grant["id"])


def run_in_thread(app: Flask, engine: GatedEngine) -> threading.Thread:
    """A worker running the queue in a thread, once its engine is inside a run (held at the gate)."""
    thread = threading.Thread(target=run_worker, args=(app, engine), daemon=True)
    thread.start()
    assert engine.entered.wait(10)
    return thread


def spends(world: World) -> list[dict[str, Any]]:
    return [event["details"] for event in events(world) if event["action"] == "budget.spend"]


def test_a_job_that_fails_at_run_time_spends_its_epsilon(world: World, app: Flask, dp_grant: str) -> None:
    job_id = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.5).json["id"]
    run_worker(app, engine=Broken())
    assert job_json(world, job_id)["status"] == "failed"
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0.5
    [spend] = spends(world)
    assert (spend["job_id"], spend["epsilon"], spend["delta"], spend["ended"]) == (job_id, "0.5", "0.0", "failed")


def test_a_job_that_times_out_spends_its_epsilon(world: World, app: Flask, dp_grant: str) -> None:
    app.config["WORKER_LEASE_SECONDS"] = 0.3
    job_id = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.25, timeout_seconds=1).json["id"]
    run_in_thread(app, GatedEngine()).join(10)
    job = job_json(world, job_id)
    assert (job["status"], job["reason"]) == ("failed", "the job exceeded its time limit")
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0.25
    assert [spend["job_id"] for spend in spends(world)] == [job_id]


def test_a_job_cancelled_while_running_spends_and_one_cancelled_while_queued_does_not(world: World, app: Flask, dp_grant: str) -> None:
    app.config["WORKER_LEASE_SECONDS"] = 0.3
    queued = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.25).json["id"]
    assert world.client.post(f"/api/v1/jobs/{queued}/cancel", headers=auth(world.analyst)).json["status"] == "cancelled"
    assert run_worker(app) == 0
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0
    running = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.25).json["id"]
    thread = run_in_thread(app, GatedEngine())
    assert world.client.post(f"/api/v1/jobs/{running}/cancel", headers=auth(world.analyst)).status_code == 200
    thread.join(10)
    assert job_json(world, running)["status"] == "cancelled"
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0.25
    assert [(spend["job_id"], spend["ended"]) for spend in spends(world)] == [(running, "cancelled")]


def test_a_job_whose_workers_died_spends_once_when_its_attempts_run_out(world: World, app: Flask, dp_grant: str) -> None:
    """Each worker read the data, then died (its lease expired); the job ends failed at the next claim and spends once."""
    job_id = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.5).json["id"]
    db = get_db_of(app)
    with db.writing() as session:
        session.execute(update(Job).where(Job.id == job_id).values(max_attempts=2))
    for attempt in (1, 2):
        dead = Queue(db, app.extensions["sandbox.ledger"], f"dead-worker-{attempt}", 30)
        assert dead.claim() is not None
        with db.writing() as session:
            session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=Job.created_at))
    assert run_worker(app) == 0  # the claim ends the job: no worker finished it in 2 attempts
    job = job_json(world, job_id)
    assert (job["status"], job["attempts"]) == ("failed", 2)
    assert budget_of(world, dp_grant)["epsilon_spent"] == 0.5
    assert [(spend["job_id"], spend["ended"]) for spend in spends(world)] == [(job_id, "failed")]
    with db.writing() as session:  # charging the same job again records nothing more
        row = session.get(Job, job_id)
        assert row is not None
        assert budget.charge(session, app.extensions["sandbox.ledger"], row, "test", ended=JobStatus.FAILED)
    assert len(spends(world)) == 1


def test_a_rejected_held_job_spends_its_epsilon(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], dp_policy() | {"release_mode": "always_review"})
    job_id = submit(world, grant["id"], COUNT_BY_RACE, epsilon=0.5).json["id"]
    run_worker(app)
    assert job_json(world, job_id)["status"] == "held"
    assert budget_of(world, grant["id"])["epsilon_spent"] == 0
    body = {"decision": "reject", "reason": "not for this scenario"}
    response = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json=body)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "rejected"
    assert budget_of(world, grant["id"])["epsilon_spent"] == 0.5
    assert [(spend["job_id"], spend["ended"]) for spend in spends(world)] == [(job_id, "rejected")]


def test_failures_count_against_the_budget_like_releases(world: World, app: Flask, dp_grant: str) -> None:
    """Ten failing jobs cannot be had for free: the budget ends them as it ends answers."""
    for _ in range(4):
        assert submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.25).status_code == 202
        run_worker(app, engine=Broken())
    refused = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.25)
    assert refused.status_code == 429, refused.json
    assert budget_of(world, dp_grant)["epsilon_remaining"] == 0


def test_a_queued_job_the_budget_no_longer_covers_never_starts(world: World, app: Flask, dp_grant: str) -> None:
    """Both fit at submission; once the first spent, the second fails before reading anything, and spends nothing."""
    first = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.6).json["id"]
    second = submit(world, dp_grant, COUNT_BY_RACE, epsilon=0.6).json["id"]
    run_worker(app, engine=Broken())
    assert job_json(world, first)["status"] == "failed"
    late = job_json(world, second)
    assert (late["status"], late["reason"]) == ("failed", "privacy budget exhausted")
    assert late["started_at"] is None
    assert budget_of(world, dp_grant)["epsilon_spent"] == pytest.approx(0.6)
    assert [spend["job_id"] for spend in spends(world)] == [first]
