"""Failure as an oracle: a job that fails exactly when a condition on one person holds."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted, released
from tests.conftest import World

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
