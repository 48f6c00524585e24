"""The release audit's check-and-record is one critical section per dataset version, on SQLite and PostgreSQL.

Two workers finish complementary jobs at the same moment: everyone's total income, and everyone's but
the race-5 person's. Checked at run time and recorded at finish, both would pass; audited and recorded
under the version's lock in the finishing transaction, the second sees the first and is withheld.
The audit is slowed after its check (before the record commits) to hold the window open.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask

from sandbox.app import instance_of
from sandbox.runtime import release_audit
from sandbox.runtime.queue import Queue
from sandbox.runtime.worker import Worker
from tests.attacks.kit import RACE5_INCOME
from tests.conftest import PUMS_POLICY, World, auth
from tests.sandbox.jobkit import approve, job_json, submit

QUERIES = ("SELECT SUM(income) AS s FROM pums", "SELECT SUM(income) AS s FROM pums WHERE race <> 5")


def test_two_workers_finishing_at_once_are_audited_one_after_the_other(
    world: World, app: Flask, grant: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    approve(world, grant["id"], {**PUMS_POLICY, "release_mode": "auto"})
    jobs = [submit(world, grant["id"], sql).json["id"] for sql in QUERIES]
    both_done = threading.Barrier(2, timeout=60)
    finish, check = Queue.finish, release_audit.check

    def finish_together(self: Queue, *args: Any, **kwargs: Any) -> bool:
        both_done.wait()  # both runs are over: the two finishing transactions start at once
        return finish(self, *args, **kwargs)

    def slow_check(*args: Any, **kwargs: Any) -> Any:
        decision = check(*args, **kwargs)
        time.sleep(0.5)  # the other finish would read the history now, were it not waiting for the lock
        return decision

    monkeypatch.setattr(Queue, "finish", finish_together)
    monkeypatch.setattr(release_audit, "check", slow_check)
    workers = [Worker(instance_of(app), worker_id=f"worker-{i}") for i in range(2)]
    claimed = [worker.queue.claim() for worker in workers]
    assert all(c is not None for c in claimed)
    threads = [threading.Thread(target=worker.process, args=(c,)) for worker, c in zip(workers, claimed, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    monkeypatch.undo()
    totals = []
    for job_id in jobs:
        if job_json(world, job_id)["status"] == "released":
            rows = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json["rows"]
            totals += [row["s"] for row in rows if row["s"] is not None]
    assert len(totals) == 1, "exactly one of the two complementary totals is released"
    statuses = sorted(job_json(world, job_id)["status"] for job_id in jobs)
    assert statuses == ["blocked", "released"]
    assert RACE5_INCOME not in totals
