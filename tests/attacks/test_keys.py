"""Hidden or odd keys: a key that is not output, a predicate that isolates one person, a NaN key."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import World

CASES = {
    "hidden_predicate_key": Attack("pums", "SELECT COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY race <> 5", "group_key"),
    "hidden_plain_key": Attack("pums", "SELECT SUM(income) AS s FROM pums GROUP BY race", "group_key"),
    "nan_key": Attack("pums", "SELECT CAST('nan' AS DOUBLE) AS k, SUM(income) AS s FROM pums GROUP BY CAST('nan' AS DOUBLE)", "group_key"),
    "measure_threshold_key": Attack(
        "pums", "SELECT income > 50000 AS rich, COUNT(*) AS n FROM pums GROUP BY income > 50000", "measure_outside_aggregate"
    ),
    "teacher_case_key": Attack(
        "teacher_survey",
        "SELECT CASE WHEN age = 45 THEN 1 ELSE 0 END AS k, SUM(optimism) AS s FROM teacher_survey"
        " GROUP BY CASE WHEN age = 45 THEN 1 ELSE 0 END",
        "group_key",
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)
