"""Rounding: under a rounding policy an exact average beside rounded counts gives the counts back exactly."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import World

CASES = {
    "avg_of_branch_counts": Attack("pums", "SELECT AVG(CASE WHEN sex = 0 THEN 1 ELSE 2 END) AS a FROM pums", "aggregate_argument"),
    "avg_beside_rounded_count": Attack(
        "pums", "SELECT sex, COUNT(*) AS n, AVG(income) AS a FROM pums GROUP BY sex", "aggregate_not_allowed"
    ),
    "count_scaled_past_rounding": Attack("pums", "SELECT sex, COUNT(*) * 100 AS n FROM pums GROUP BY sex", "aggregate_output"),
    "teacher_avg": Attack("teacher_survey", "SELECT sex, AVG(optimism) AS a FROM teacher_survey GROUP BY sex", "aggregate_not_allowed"),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset, rounding=True), attack)
