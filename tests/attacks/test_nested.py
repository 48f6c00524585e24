"""Nested aggregates: a subquery's aggregate decides what the outer query counts."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import World

CASES = {
    "in_having_one_person": Attack(
        "pums",
        "SELECT sex, COUNT(*) AS n FROM pums"
        " WHERE sex IN (SELECT sex FROM pums WHERE race = 5 GROUP BY sex HAVING SUM(income) > 50000) GROUP BY sex",
        "subquery",
    ),
    "in_order_limit": Attack(
        "pums",
        "SELECT educ, COUNT(*) AS n FROM pums"
        " WHERE educ IN (SELECT educ FROM pums GROUP BY educ ORDER BY MAX(income) DESC LIMIT 1) GROUP BY educ",
        "subquery",
    ),
    "scalar_subquery": Attack(
        "pums", "SELECT race, COUNT(*) AS n FROM pums WHERE age > (SELECT MAX(age) FROM pums WHERE race = 5) GROUP BY race", "subquery"
    ),
    "cte_aggregate": Attack(
        "pums", "WITH t AS (SELECT race, SUM(income) AS s FROM pums GROUP BY race) SELECT COUNT(*) AS n FROM t", "subquery"
    ),
    "teacher_derived_aggregate": Attack(
        "teacher_survey", "SELECT COUNT(*) AS n FROM (SELECT sex, AVG(optimism) AS a FROM teacher_survey GROUP BY sex) AS t", "subquery"
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)
