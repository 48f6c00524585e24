"""A known constant for everyone else: every other unit adds a number the analyst chose, so the cell passes and still equals one value."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import World

CASES = {
    "sum_else_constant": Attack("pums", "SELECT SUM(CASE WHEN race = 5 THEN income ELSE 100000 END) AS s FROM pums", "aggregate_argument"),
    "avg_else_constant": Attack("pums", "SELECT AVG(CASE WHEN race = 5 THEN income ELSE 100000 END) AS s FROM pums", "aggregate_argument"),
    "stddev_else_zero": Attack("pums", "SELECT STDDEV(CASE WHEN race = 5 THEN income ELSE 0 END) AS s FROM pums", "aggregate_argument"),
    "quantile_of_case": Attack(
        "pums", "SELECT QUANTILE_CONT(CASE WHEN race = 5 THEN income ELSE 0 END, 0.999) AS q FROM pums", "aggregate_argument"
    ),
    "indicator_product": Attack("pums", "SELECT SUM(income * (race = 5)) AS s FROM pums", "aggregate_argument"),
    "coalesce_nullif": Attack("pums", "SELECT SUM(COALESCE(NULLIF(race, 5) * 0, income)) AS s FROM pums", "dimension_as_measure"),
    "filter_clause": Attack("pums", "SELECT SUM(income) FILTER (WHERE race = 5) AS s FROM pums", "function_not_allowed"),
    "teacher_if_constant": Attack(
        "teacher_survey",
        "SELECT SUM(IF(age = 45 AND marital_status = 4 AND sex = 1, optimism, 20)) AS s FROM teacher_survey",
        "aggregate_argument",
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)
