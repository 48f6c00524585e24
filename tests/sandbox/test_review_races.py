"""Reviews under concurrency and at volume: one decision wins, and no held output drops out of the queue."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from sandbox.service import jobs as job_service
from tests.conftest import PG_URL, PUMS_POLICY, World, auth, make_user
from tests.sandbox.jobkit import RACE_SQL, approve, run_worker, submit


@pytest.fixture
def held_job(world: World, app: Flask, grant: dict[str, Any]) -> str:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "always_review"})
    job_id = str(submit(world, grant["id"], RACE_SQL).json["id"])
    run_worker(app)
    return job_id


@pytest.mark.skipif(PG_URL is None, reason="SQLite serialises writers before they read; the race needs PostgreSQL")
def test_two_auditors_at_once_only_one_decides(world: World, app: Flask, held_job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = job_service.visible
    barrier = threading.Barrier(2, timeout=10)

    def both_read_first(*args: Any, **kwargs: Any) -> Any:
        job = real(*args, **kwargs)
        barrier.wait()  # both requests have read the job as held before either locks it
        return job

    monkeypatch.setattr(job_service, "visible", both_read_first)
    _, second = make_user(world.client, world.admin, world.ids["audit"], "auditor", "second auditor")
    tokens = {"release": world.auditor, "reject": second}
    answers: dict[str, int] = {}

    def decide(decision: str) -> None:
        response = app.test_client().post(
            f"/api/v1/reviews/{held_job}", headers=auth(tokens[decision]), json={"decision": decision, "reason": f"{decision} it"}
        )
        answers[decision] = response.status_code

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("release", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert sorted(answers.values()) == [200, 409]
    winner = next(d for d, code in answers.items() if code == 200)
    status = world.client.get(f"/api/v1/jobs/{held_job}", headers=auth(world.analyst)).json["status"]
    assert status == ("released" if winner == "release" else "rejected")


def test_held_jobs_stay_in_the_queue_behind_many_newer_jobs(world: World, app: Flask, held_job: str, grant: dict[str, Any]) -> None:
    for _ in range(205):
        submit(world, grant["id"], RACE_SQL)
    queue = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    assert [item["job"]["id"] for item in queue] == [held_job]
    first = world.client.get("/api/v1/jobs?limit=100", headers=auth(world.analyst)).json
    assert len(first["items"]) == 100
    seen = [j["id"] for j in first["items"]]
    page = first
    while page["next_before"]:
        page = world.client.get(
            "/api/v1/jobs", headers=auth(world.analyst), query_string={"limit": 100, "before": page["next_before"]}
        ).json
        seen += [j["id"] for j in page["items"]]
    assert len(seen) == len(set(seen)) == 206
    held = world.client.get("/api/v1/jobs?status=held", headers=auth(world.analyst)).json["items"]
    assert [j["id"] for j in held] == [held_job]
