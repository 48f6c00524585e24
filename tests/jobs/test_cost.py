"""The cost estimate (``jobs.cost``) is an upper bound on what a plan computes, from metadata alone.

Checked against the engine: random crosstabs and grouped queries over real PUMS rows and over mock
rows never return more rows than the estimate's groups; and the bound is tight where the metadata
allows (a key traced through a derived table counts its column's levels, not the rows).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import TooExpensive
from core.schema import ColumnSpec
from jobs.cost import Estimate, check, declared_levels, estimate
from jobs.mock import mock_levels, mock_table
from jobs.query import validate
from jobs.query.dp import plan_dp
from jobs.stats import plan as plan_stats
from jobs.stats import run as run_stats
from policies.model import CostLimits
from tests.jobs.conftest import POLICY, SCHEMAS, run
from tests.jobs.stats.conftest import ENGINE, stats_policy

DIMENSIONS = ["age", "sex", "educ", "race", "married"]
STATS_POLICY = stats_policy(married="dimension")


def rows_of(tables: dict[str, pa.Table]) -> dict[str, int]:
    return {name: table.num_rows for name, table in tables.items()}


@settings(max_examples=15, deadline=None)
@given(
    dims=st.lists(st.sampled_from(DIMENSIONS), min_size=1, max_size=4, unique=True),
    margins=st.booleans(),
    aggfunc=st.lists(st.sampled_from(["sum", "count", "mean"]), min_size=1, max_size=3, unique=True),
    mock_rows=st.sampled_from([0, 1, 7, 300]),
)
def test_a_crosstab_never_has_more_rows_than_its_estimate(
    tables: dict[str, pa.Table], dims: list[str], margins: bool, aggfunc: list[str], mock_rows: int
) -> None:
    spec = {"op": "crosstab", "dataset": "pums", "index": dims[:1], "columns": dims[1:], "margins": margins}
    spec |= {"values": "income", "aggfunc": aggfunc}
    plan = plan_stats(spec, STATS_POLICY, SCHEMAS)
    real = estimate(plan, SCHEMAS, rows_of(tables), declared_levels, suppression=True)
    result = run_stats(plan, tables, ENGINE, STATS_POLICY.disclosure)
    assert result.table.num_rows <= real.groups
    assert real.cells == real.groups * len(aggfunc)
    assert real.dimensions == len(dims)
    additive = set(aggfunc) & {"sum", "count"}
    assert real.suppression_cells == (real.groups if margins and additive else 0)
    mock = {"pums": mock_table(SCHEMAS["pums"], mock_rows, 3)}
    guessed = estimate(plan, SCHEMAS, {"pums": mock_rows}, mock_levels, suppression=True)
    assert run_stats(plan, mock, ENGINE, STATS_POLICY.disclosure).table.num_rows <= guessed.groups


QUERIES = {
    "one-key": ("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", 7),
    "no-key": ("SELECT COUNT(*) AS n, SUM(income) AS total FROM pums", 1),
    "function-of-a-key": ("SELECT age + 1 AS a, COUNT(*) AS n FROM pums GROUP BY age + 1", 102),
    "capped-by-rows": ("SELECT age, educ, COUNT(*) AS n FROM pums GROUP BY age, educ", 1_000),
    "derived-table": ("SELECT a, COUNT(*) AS n FROM (SELECT age AS a, sex FROM pums WHERE sex = 1) AS t GROUP BY a", 102),
    "join-untraced-string": (
        "SELECT t.industry, p.sex, COUNT(*) AS n FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry, p.sex",
        None,  # industry is a free string: as many values as tax has rows, times sex's 3
    ),
}


@pytest.mark.parametrize(("sql", "groups"), QUERIES.values(), ids=QUERIES.keys())
def test_a_query_never_has_more_rows_than_its_estimate(tables: dict[str, pa.Table], sql: str, groups: int | None) -> None:
    plan = validate(sql, POLICY, SCHEMAS)
    found = estimate(plan, SCHEMAS, rows_of(tables), declared_levels, suppression=True)
    assert run(plan.sql, tables).num_rows <= found.groups
    assert found.groups == (groups if groups is not None else tables["tax"].num_rows * 3)
    assert found.cells == found.groups * sum(1 for o in plan.outputs if o.aggregate is not None)
    assert found.suppression_cells == 0


LEVELS: dict[str, tuple[dict[str, Any], int]] = {
    "domain": ({"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3]}, 4),
    "int-bounds": ({"role": "quasi_identifier", "type": "int", "bounds": [0, 100]}, 102),
    "fractional-int-bounds": ({"role": "quasi_identifier", "type": "int", "bounds": [0.5, 3.5]}, 4),
    "bool": ({"role": "attribute", "type": "bool"}, 3),
    "float-bounds": ({"role": "sensitive", "type": "float", "bounds": [0, 1]}, 1_000),
    "free-string": ({"role": "attribute", "type": "string"}, 1_000),
    "identifier": ({"role": "identifier", "type": "int", "domain": [1, 2]}, 1_000),
}


@pytest.mark.parametrize(("spec", "levels"), LEVELS.values(), ids=LEVELS.keys())
def test_declared_levels_count_a_missing_value_and_never_pass_the_rows(spec: dict[str, Any], levels: int) -> None:
    column = ColumnSpec.model_validate(spec)
    assert declared_levels(column, 1_000) == levels
    assert declared_levels(column, 2) == 2


def test_check_names_the_first_cap_passed() -> None:
    limits = CostLimits(max_cells=10, max_dimensions=2, max_suppression_cells=5)
    check(Estimate(groups=5, cells=10, dimensions=2, suppression_cells=5), limits)
    with pytest.raises(TooExpensive) as raised:
        check(Estimate(groups=6, cells=12, dimensions=2, suppression_cells=6), limits)
    assert raised.value.details == {"limit": "max_cells", "estimate": 12, "max": 10}
    with pytest.raises(TooExpensive) as raised:
        check(Estimate(groups=6, cells=6, dimensions=3, suppression_cells=0), limits)
    assert raised.value.details == {"limit": "max_dimensions", "estimate": 3, "max": 2}


def test_a_dp_answer_is_not_capped_by_the_rows() -> None:
    """A DP answer has a row for every combination of its keys' declared domains, present in the data or not."""
    plan = validate("SELECT race, educ, COUNT(*) AS n FROM pums GROUP BY race, educ", POLICY, SCHEMAS)
    noisy = dataclasses.replace(plan, dp=plan_dp(plan, SCHEMAS, 1))
    assert estimate(plan, SCHEMAS, {"pums": 50}, declared_levels, suppression=True).groups == 50
    assert estimate(noisy, SCHEMAS, {"pums": 50}, declared_levels, suppression=True).groups == 7 * 17
