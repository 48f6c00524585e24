"""Order and presence: a suppressed row's position or presence shows its value."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import RACE5_INCOME, Attack, assert_refused, granted, released
from tests.conftest import World

CASES = {
    "order_by_hidden_average": Attack(
        "pums",
        "SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY AVG(income) - CASE WHEN race = 1 THEN 40000 ELSE 0 END",
        "order_by",
    ),
    "order_by_output_sum": Attack("pums", "SELECT race, SUM(income) AS s FROM pums GROUP BY race ORDER BY s", "order_by"),
    "having_or_count": Attack(
        "pums", "SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING SUM(income) > 50000 OR COUNT(*) > 500", "having"
    ),
    "limit_after_order": Attack("pums", "SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY race LIMIT 1", "limit"),
    "teacher_order_by_average": Attack(
        "teacher_survey", "SELECT sex, COUNT(*) AS n FROM teacher_survey GROUP BY sex ORDER BY AVG(optimism)", "order_by"
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)


def test_rows_come_in_key_order_and_the_one_person_cell_is_withheld(world: World, app: Flask) -> None:
    """Ordered by its key, the race-5 row's place says nothing; its average is suppressed (one unit)."""
    status, rows = released(
        world, app, granted(world, "pums"), "SELECT race, COUNT(*) AS n, AVG(income) AS a FROM pums GROUP BY race ORDER BY race"
    )
    assert status == "released"
    assert [row["race"] for row in rows] == sorted(row["race"] for row in rows)
    assert all(row["a"] != RACE5_INCOME for row in rows)
    assert {row["race"]: row["a"] for row in rows}.get(5) is None
