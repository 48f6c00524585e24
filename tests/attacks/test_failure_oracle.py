"""Failure as an oracle: a job that fails exactly when a condition on one person holds."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest
from flask import Flask

from jobs.engine import DuckDBEngine
from sandbox.runtime.child import FAILED_REASON, MEMORY_REASON, OutOfMemory
from tests.attacks.kit import RACE5_INCOME, Attack, assert_refused, granted, released
from tests.conftest import World
from tests.sandbox.jobkit import job_json, run_worker, submit

CASES = {
    "cast_case_on_measure": Attack(
        "pums",
        "SELECT COUNT(*) AS n FROM pums WHERE CAST(CASE WHEN race = 5 AND income > 50000 THEN 'x' ELSE '1' END AS INT) = 1",
        "measure_outside_aggregate",
    ),
    "cast_case_in_aggregate": Attack(
        "pums", "SELECT SUM(CAST(CASE WHEN race = 5 AND income > 50000 THEN 'x' ELSE '1' END AS INT)) AS n FROM pums", "aggregate_argument"
    ),
    "modulo_by_zero": Attack("pums", "SELECT COUNT(*) AS n FROM pums WHERE 100 % (age - 40) = 0", "function_not_allowed"),
    "teacher_text_compare": Attack(
        "teacher_survey", "SELECT COUNT(*) AS n FROM teacher_survey WHERE CAST(age AS VARCHAR) = 45", "type_mismatch"
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)


@pytest.mark.parametrize("threshold", [50000, 60000], ids=["below", "above"])
def test_a_cast_that_would_fail_on_one_person_runs_the_same_either_way(threshold: int, world: World, app: Flask) -> None:
    """``CAST('x' AS INT)`` for the race-5 person only: it runs as TRY_CAST, so the job does not fail on that person."""
    condition = f"CAST(CASE WHEN race = 5 AND age > {threshold // 1000} THEN 'x' ELSE '1' END AS INT) = 1"
    sql = "SELECT sex, COUNT(*) AS n FROM pums WHERE " + condition + " GROUP BY sex ORDER BY sex"  # noqa: S608
    status, rows = released(world, app, granted(world, "pums"), sql)
    assert status == "released"
    assert [row["sex"] for row in rows] == [0, 1]


def test_arithmetic_that_would_overflow_on_large_values_runs(world: World, app: Flask) -> None:
    """``income`` to the fourth power overflows BIGINT for incomes above about 55,000: on DOUBLE it does not fail."""
    status, rows = released(
        world, app, granted(world, "pums"), "SELECT sex, SUM(income * income * income * income) AS s FROM pums GROUP BY sex ORDER BY sex"
    )
    assert status == "released"
    assert len(rows) == 2


class _OutOfMemoryOnOnePerson:
    """Stands in for a run whose memory depends on the data: it exhausts the child's memory (as ``ChildExecutor``
    reports it) exactly when the race-5 person's income is above ``threshold``, and runs on DuckDB otherwise."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        pums = tables["pums"].to_pandas()
        if (pums.loc[pums.race == 5, "income"] > self.threshold).any():
            raise OutOfMemory(MEMORY_REASON, "memory: OutOfMemoryException")
        return DuckDBEngine().run(sql, tables, interrupt)


class _Broken:
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")


def test_a_memory_failure_on_one_person_reads_like_any_other_failure(world: World, app: Flask) -> None:
    """The fact of failure stays a 1-bit channel (DP grants charge it, test_dp_failures.py); its text and timings add nothing."""
    grant_id = granted(world, "pums")
    sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex ORDER BY sex"
    seen = {}
    for name, engine in {"memory": _OutOfMemoryOnOnePerson(RACE5_INCOME - 1), "other": _Broken()}.items():
        job_id = submit(world, grant_id, sql).json["id"]
        run_worker(app, engine=engine)
        seen[name] = job_json(world, job_id)
        assert job_json(world, job_id, world.auditor)["reason"] == (MEMORY_REASON if name == "memory" else FAILED_REASON)
    memory, other = seen["memory"], seen["other"]
    assert (memory["status"], memory["reason"]) == (other["status"], other["reason"]) == ("failed", FAILED_REASON)
    for job in (memory, other):
        for moment in ("created_at", "started_at", "finished_at"):
            assert datetime.fromisoformat(job[moment]).microsecond == 0
        assert float(job["run_seconds"]).is_integer()
        assert float(job["queued_seconds"]).is_integer()
    job_id = submit(world, grant_id, sql).json["id"]
    run_worker(app, engine=_OutOfMemoryOnOnePerson(RACE5_INCOME))  # the condition does not hold: it runs
    assert job_json(world, job_id)["status"] == "released"
