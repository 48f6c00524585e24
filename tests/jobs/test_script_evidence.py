"""A helper's evidence is parsed strictly, checked against its table and judged by the grant's rules."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from jobs.script import evidence
from policies.model import Disclosure

SUMS = pa.table({"sex": [0, 1], "sum": [1000.0, 250.0]})


def crosstab(cells: list[Any], aggregate: str = "sum") -> dict[str, Any]:
    return {"helper": "crosstab", "aggregate": aggregate, "keys": ["sex"], "cells": cells}


def cell(value: float, units: int, top: list[float], total: float, **extra: Any) -> dict[str, Any]:
    return {"value": value, "units": units, "top": top, "total": total, "negative": 0, "missing": 0, **extra}


def test_dominated_and_small_cells_are_flagged_and_the_rest_pass() -> None:
    found = crosstab([cell(1000.0, 20, [950.0, 10.0], 1000.0), cell(250.0, 30, [20.0, 20.0], 250.0)])
    judged = evidence.judge(found, SUMS, Disclosure())
    assert judged["matches_table"] is True
    assert judged["status"] == "suppress"
    assert [(f["row"], f["rule"]) for f in judged["flagged"]] == [(0, "nk_dominance")]
    few = evidence.judge(crosstab([cell(1000.0, 3, [400.0, 300.0], 1000.0), cell(250.0, 30, [20.0, 20.0], 250.0)]), SUMS, Disclosure())
    assert [(f["row"], f["rule"]) for f in few["flagged"]] == [(0, "threshold")]


def test_evidence_of_another_table_does_not_match() -> None:
    found = crosstab([cell(999.0, 20, [20.0, 10.0], 999.0), cell(250.0, 30, [20.0, 20.0], 250.0)])
    assert evidence.judge(found, SUMS, Disclosure())["matches_table"] is False


@pytest.mark.parametrize(
    "found",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"helper": "other", "aggregate": "sum", "cells": []}, id="unknown-helper"),
        pytest.param(crosstab([], "median"), id="unknown-aggregate"),
        pytest.param(crosstab(["x"]), id="cell-not-an-object"),
        pytest.param(crosstab([cell(1.0, -1, [], 1.0)]), id="negative-count"),
        pytest.param(crosstab([cell(1.0, True, [], 1.0)]), id="boolean-count"),
        pytest.param(crosstab([cell(1.0, 2, [1.0] * 11, 1.0)]), id="too-many-top-values"),
        pytest.param(crosstab([cell(1.0, 2, ["1"], 1.0)]), id="top-not-numbers"),
        pytest.param(crosstab([cell(1.0, 2, [], 1e400)]), id="infinite-total"),
    ],
)
def test_malformed_evidence_is_refused(found: Any) -> None:
    with pytest.raises(evidence.EvidenceRefused):
        evidence.judge(found, SUMS, Disclosure())


COEFS = pa.table({"term": ["const", "age"], "coef": [1.5, 0.25]})


@pytest.mark.parametrize(("dof", "status"), [(8.0, "suppress"), (10.0, "pass")], ids=["below-threshold", "at-threshold"])
def test_a_models_degrees_of_freedom_are_judged_against_the_threshold(dof: float, status: str) -> None:
    judged = evidence.judge({"helper": "ols", "dof": dof, "nobs": 12, "coef": [1.5, 0.25]}, COEFS, Disclosure(dof_threshold=10))
    assert judged["status"] == status
    assert judged["matches_table"] is True
    assert [f["rule"] for f in judged["flagged"]] == (["dof"] if status == "suppress" else [])


def test_a_models_evidence_of_other_coefficients_does_not_match() -> None:
    judged = evidence.judge({"helper": "logit", "dof": 50.0, "nobs": 52, "coef": [1.5, 0.3]}, COEFS, Disclosure())
    assert judged["matches_table"] is False


@pytest.mark.parametrize(
    "found",
    [
        pytest.param({"helper": "ols", "dof": "8", "nobs": 12, "coef": []}, id="dof-not-a-number"),
        pytest.param({"helper": "ols", "dof": 8.0, "nobs": -1, "coef": []}, id="negative-nobs"),
        pytest.param({"helper": "ols", "dof": 8.0, "nobs": 12, "coef": "1.5"}, id="coef-not-a-list"),
    ],
)
def test_malformed_model_evidence_is_refused(found: Any) -> None:
    with pytest.raises(evidence.EvidenceRefused):
        evidence.judge(found, COEFS, Disclosure())


# A pivot table of sums by education (rows) and sex (columns); the helper left (1, "sex=1") empty.
GRID = pa.table({"educ": [1, 2], "sex=0": [1000.0, 250.0], "sex=1": [400.0, None]})


def grid(cells: list[Any], rows: int = 2, helper: str = "pivot_table") -> dict[str, Any]:
    return {"helper": helper, "keys": ["educ"], "rows": rows, "cells": cells}


def at(row: int, column: Any, aggregate: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"row": row, "column": column, "aggregate": aggregate, **body}


GRID_CELLS = [
    at(0, "sex=0", "sum", cell(1000.0, 20, [950.0, 10.0], 1000.0)),
    at(0, "sex=1", "sum", cell(400.0, 3, [200.0, 150.0], 400.0)),
    at(1, "sex=0", "sum", cell(250.0, 30, [20.0, 20.0], 250.0)),
]


def test_a_grids_cells_are_judged_where_they_stand() -> None:
    judged = evidence.judge(grid(GRID_CELLS), GRID, Disclosure())
    assert (judged["helper"], judged["matches_table"], judged["cells"], judged["advisory"]) == ("pivot_table", True, 3, True)
    assert [(f["row"], f["column"], f["rule"]) for f in judged["flagged"]] == [(0, "sex=0", "nk_dominance"), (0, "sex=1", "threshold")]


@pytest.mark.parametrize(
    "table",
    [
        pytest.param(GRID.set_column(2, "sex=1", pa.array([400.0, 5.0])), id="a-value-in-a-cell-left-empty"),
        pytest.param(GRID.set_column(1, "sex=0", pa.array([1000.0, 251.0])), id="a-cell-changed"),
        pytest.param(GRID.slice(0, 1), id="a-row-dropped"),
        pytest.param(GRID.drop_columns(["sex=1"]), id="a-column-dropped"),
        pytest.param(GRID.set_column(1, "sex=0", pa.array(["1000", "250"])), id="values-turned-to-text"),
    ],
)
def test_a_grid_changed_after_the_helper_made_it_does_not_match(table: pa.Table) -> None:
    assert evidence.judge(grid(GRID_CELLS), table, Disclosure())["matches_table"] is False


STATS = pa.table({"column": ["income"], "min": [0.5], "max": [99.0]})


@pytest.mark.parametrize(("below", "above", "flagged"), [(1, 40, True), (12, 40, False)])
def test_an_order_statistic_needs_rows_on_each_side(below: int, above: int, flagged: bool) -> None:
    found = grid(
        [
            at(0, "min", "min", {"value": 0.5, "units": 40, "below": below, "above": above}),
            at(0, "max", "max", {"value": 99.0, "units": 40, "below": 40, "above": 12}),
        ],
        rows=1,
        helper="describe",
    )
    judged = evidence.judge(found, STATS, Disclosure())
    assert judged["matches_table"] is True
    assert [(f["column"], f["rule"]) for f in judged["flagged"]] == ([("min", "order_statistic")] if flagged else [])


@pytest.mark.parametrize(
    "found",
    [
        pytest.param(grid(GRID_CELLS, rows=-1), id="negative-rows"),
        pytest.param(grid(GRID_CELLS, rows=10_001), id="too-many-rows"),
        pytest.param(grid([at(2, "sex=0", "sum", cell(1.0, 20, [], 1.0))]), id="row-out-of-range"),
        pytest.param(grid([at(0, 7, "sum", cell(1.0, 20, [], 1.0))]), id="column-not-a-name"),
        pytest.param(grid([at(0, "sex=0", "mode", cell(1.0, 20, [], 1.0))]), id="unknown-aggregate"),
        pytest.param(grid([GRID_CELLS[0], GRID_CELLS[0]]), id="a-cell-twice"),
        pytest.param(grid([at(0, "sex=0", "max", {"value": 1.0, "units": 20})]), id="order-statistic-without-sides"),
        pytest.param(grid([at(0, "sex=0", "max", {"value": 1.0, "units": 20, "below": 21, "above": 1})]), id="more-below-than-rows"),
        pytest.param(grid(["x"]), id="cell-not-an-object"),
        pytest.param(grid([{**GRID_CELLS[0], "units": -3}]), id="negative-count"),
    ],
)
def test_malformed_grid_evidence_is_refused(found: Any) -> None:
    with pytest.raises(evidence.EvidenceRefused):
        evidence.judge(found, GRID, Disclosure())
