"""The cap on a grant's released cells: counted at release, atomically, by workers and auditors alike."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError
from sqlalchemy import update

from policies.model import Policy, ReleasedCellsCap
from sandbox.app import instance_of
from sandbox.models import Job
from sandbox.runtime.worker import Worker
from sandbox.service import release_cap
from sandbox.service.release_cap import CAP_REACHED
from tests.conftest import PUMS_POLICY, World, auth
from tests.sandbox.jobkit import approve, events, job_json, run_worker, submit

BY_SEX = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"  # 2 rows x 1 number: 2 cells
TOTAL = "SELECT COUNT(*) AS n FROM pums"  # 1 cell


def capped(cells: int, period_days: int | None = None, **policy: Any) -> dict[str, Any]:
    return {**PUMS_POLICY, "release_mode": "auto", "max_released_cells": {"cells": cells, "period_days": period_days}, **policy}


def run(world: World, app: Flask, grant_id: str, sql: str) -> dict[str, Any]:
    response = submit(world, grant_id, sql)
    assert response.status_code == 202, response.json
    run_worker(app)
    return job_json(world, response.json["id"])


def test_the_cap_is_part_of_the_policy_and_validated() -> None:
    policy = Policy.model_validate(capped(10, 1))
    assert policy.max_released_cells == ReleasedCellsCap(cells=10, period_days=1)
    assert Policy.model_validate(PUMS_POLICY).max_released_cells is None
    for wrong in ({"cells": 0}, {"cells": 5, "period_days": 0}, {"cells": 5, "per": "day"}):
        with pytest.raises(ValidationError):
            Policy.model_validate({**PUMS_POLICY, "max_released_cells": wrong})


def test_a_release_past_the_cap_fails_with_a_fixed_reason_and_the_ledger_counts(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], capped(3))
    first = run(world, app, grant["id"], BY_SEX)
    assert first["status"] == "released"
    second = run(world, app, grant["id"], BY_SEX)  # 2 + 2 > 3
    assert (second["status"], second["reason"]) == ("failed", CAP_REACHED)
    assert world.client.get(f"/api/v1/jobs/{second['id']}/result", headers=auth(world.analyst)).status_code in (403, 404, 409)
    third = run(world, app, grant["id"], TOTAL)  # a failed job counts nothing: 2 + 1 <= 3
    assert third["status"] == "released"
    assert run(world, app, grant["id"], TOTAL)["status"] == "failed"
    ended = {e["object_id"]: e["details"] for e in events(world) if e["action"] in ("job.released", "job.failed")}
    assert ended[first["id"]]["released_cells"] == 2
    assert ended[first["id"]]["cap"] == {"cells": 3, "period_days": None, "used_before": 0}
    assert ended[second["id"]]["cap"]["used_before"] == 2
    assert ended[second["id"]]["reason"] == CAP_REACHED
    assert ended[third["id"]]["cap"]["used_before"] == 2


def test_a_blocked_job_counts_like_a_release(world: World, app: Flask, grant: dict[str, Any]) -> None:
    """Whether a job is blocked depends on the data as much as a number does: the decision is charged to the cap."""
    approve(world, grant["id"], capped(3))
    blocked = run(world, app, grant["id"], "SELECT COUNT(*) AS n FROM pums WHERE race = 5")  # one person: one cell, withheld
    assert blocked["status"] == "blocked"
    first = run(world, app, grant["id"], BY_SEX)
    assert first["status"] == "released"  # 1 + 2 <= 3
    last = run(world, app, grant["id"], TOTAL)  # 1 + 2 + 1 > 3
    assert (last["status"], last["reason"]) == ("failed", CAP_REACHED)
    ended = {e["object_id"]: e["details"] for e in events(world) if e["action"] in ("job.released", "job.failed")}
    assert ended[first["id"]]["cap"]["used_before"] == 1


def test_the_period_is_a_rolling_window(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], capped(2, period_days=1))
    first = run(world, app, grant["id"], BY_SEX)
    assert first["status"] == "released"
    assert run(world, app, grant["id"], TOTAL)["status"] == "failed"
    with instance_of(app).db.writing() as session:
        session.execute(update(Job).where(Job.id == first["id"]).values(finished_at=datetime.now(UTC) - timedelta(days=1, minutes=1)))
    assert run(world, app, grant["id"], BY_SEX)["status"] == "released"


def test_no_cap_counts_cells_and_releases(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "auto"})
    job = run(world, app, grant["id"], BY_SEX)
    assert job["status"] == "released"
    with instance_of(app).db.sessions() as session:
        stored = session.get(Job, job["id"])
        assert stored is not None
        assert stored.released_cells == 2


def test_an_auditors_release_past_the_cap_fails(world: World, app: Flask, grant: dict[str, Any]) -> None:
    approve(world, grant["id"], capped(3, release_mode="always_review"))
    held = [str(submit(world, grant["id"], BY_SEX).json["id"]) for _ in range(2)]
    run_worker(app)
    run_worker(app)
    answers = [
        world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "release", "reason": "fine"})
        for job_id in held
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert [job_json(world, job_id)["status"] for job_id in held] == ["released", "failed"]
    assert job_json(world, held[1])["reason"] == CAP_REACHED


def test_parallel_workers_release_no_more_than_the_cap(
    world: World, app: Flask, grant: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers on one queue release at most the cap, whatever order they finish in.

    End to end only: the workers' runs rarely finish inside each other's window, so this passes
    without the grant lock too; ``test_two_transactions_admitting_at_once_are_serialised`` is the
    test that fails without it (on PostgreSQL).
    """
    approve(world, grant["id"], capped(6))
    jobs = [str(submit(world, grant["id"], BY_SEX).json["id"]) for _ in range(8)]
    real = release_cap.released_so_far
    pair = threading.Barrier(2, timeout=1.0)

    def slow_read(*args: Any, **kwargs: Any) -> int:
        used = real(*args, **kwargs)
        # Without the lock two finishing workers could meet here, both having read the same total;
        # with it, the other waits for this transaction and the barrier breaks.
        with contextlib.suppress(threading.BrokenBarrierError):
            pair.wait()
        return used

    monkeypatch.setattr(release_cap, "released_so_far", slow_read)
    workers = [threading.Thread(target=Worker(instance_of(app), worker_id=f"w{i}").run, kwargs={"once": True}) for i in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(300)
    monkeypatch.undo()
    statuses = [job_json(world, job_id) for job_id in jobs]
    assert sum(1 for s in statuses if s["status"] == "released") == 3  # 3 x 2 cells = the cap of 6
    assert all(s["reason"] == CAP_REACHED for s in statuses if s["status"] != "released")


def test_two_transactions_admitting_at_once_are_serialised(world: World, app: Flask, grant: dict[str, Any]) -> None:
    """The second admission waits for the first transaction, then sees its cells (the grant row lock, or SQLite's writer lock)."""
    approve(world, grant["id"], capped(3))
    ids = [str(submit(world, grant["id"], BY_SEX).json["id"]) for _ in range(2)]
    db = instance_of(app).db
    first_in, release_first = threading.Event(), threading.Event()
    fits: dict[str, bool] = {}

    def admit(job_id: str, hold: bool) -> None:
        with db.writing() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.released_cells = 2
            fits[job_id] = release_cap.admit(session, job).fits
            if fits[job_id]:
                job.status, job.finished_at = "released", datetime.now(UTC)
            if hold:
                first_in.set()
                assert release_first.wait(10)

    first = threading.Thread(target=admit, args=(ids[0], True))
    first.start()
    assert first_in.wait(10)
    second = threading.Thread(target=admit, args=(ids[1], False))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting for the first transaction
    release_first.set()
    first.join(10)
    second.join(10)
    assert fits == {ids[0]: True, ids[1]: False}
