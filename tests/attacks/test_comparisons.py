"""Comparisons of a measure: where a value lies, one bit per job."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import World

CASES = {
    "count_distinct_predicate": Attack(
        "pums", "SELECT race, COUNT(DISTINCT income > 50000) AS k FROM pums GROUP BY race", "aggregate_argument"
    ),
    "sum_of_comparison": Attack("pums", "SELECT race, SUM(income > 50000) AS k FROM pums GROUP BY race", "aggregate_argument"),
    "max_of_comparison": Attack("pums", "SELECT race, MAX(income >= 56000) AS k FROM pums GROUP BY race", "aggregate_argument"),
    "division_indicator": Attack("pums", "SELECT race, SUM(income / income) AS k FROM pums GROUP BY race", "aggregate_argument"),
    "teacher_greatest": Attack(
        "teacher_survey", "SELECT sex, SUM(GREATEST(optimism, 30)) AS k FROM teacher_survey GROUP BY sex", "aggregate_argument"
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)
