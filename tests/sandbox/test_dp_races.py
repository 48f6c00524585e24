"""The privacy budget under concurrency: parallel submissions and workers never release more than the budget covers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask

from sandbox.app import instance_of
from sandbox.runtime.worker import Worker
from sandbox.service import budget
from tests.conftest import PG_URL, World, auth
from tests.sandbox.jobkit import approve
from tests.sandbox.test_dp_jobs import COUNT_BY_RACE, budget_of, dp_policy


@pytest.mark.skipif(PG_URL is None, reason="SQLite serialises writers before they read; the race needs PostgreSQL")
def test_parallel_jobs_release_exactly_what_the_budget_affords(
    world: World, app: Flask, grant: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    approve(world, grant["id"], dp_policy(epsilon_total=3.0, epsilon_per_job=1.0))
    accepted: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        response = app.test_client().post(
            "/api/v1/jobs",
            headers=auth(world.analyst),
            json={"grant_id": grant["id"], "kind": "query", "spec": {"sql": COUNT_BY_RACE, "epsilon": 0.3}},
        )
        assert response.status_code == 202, response.json
        with lock:
            accepted.append(response.json["id"])

    senders = [threading.Thread(target=send) for _ in range(20)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(60)
    assert len(accepted) == 20  # nothing is spent yet: every one fits the pre-check
    real = budget.grant_spent

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        spent = real(*args, **kwargs)
        time.sleep(0.2)  # widen the window between reading the spends and recording one: without locks, workers overspend
        return spent

    monkeypatch.setattr(budget, "grant_spent", slow_read)
    workers = [threading.Thread(target=Worker(instance_of(app), worker_id=f"w{i}").run, kwargs={"once": True}) for i in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(300)
    monkeypatch.undo()
    statuses = [world.client.get(f"/api/v1/jobs/{job_id}", headers=auth(world.analyst)).json for job_id in accepted]
    released = [s for s in statuses if s["status"] == "released"]
    failed = [s for s in statuses if s["status"] == "failed"]
    assert len(released) == 10  # floor(3.0 / 0.3)
    assert len(failed) == 10
    assert all(s["reason"] == "privacy budget exhausted" for s in failed)
    seen = budget_of(world, grant["id"])
    assert seen["epsilon_spent"] == pytest.approx(3.0)
    assert seen["epsilon_spent"] <= seen["epsilon_total"]
