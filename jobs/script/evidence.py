"""The disclosure evidence of a script's helper tables (``sandbox_io.crosstab``, ``pivot_table``, ``describe``, ``ols``,
``logit``), judged by the grant's rules — as advice.

A helper computes, inside the sandbox, a table and per cell the rows behind it, the largest
contributions, the total, the negative and missing values, and for an order statistic (min, max,
median, quantile) the rows at or below and at or above it. A crosstab's cells are its rows (one value
column); a pivot table's and a describe's are a grid, each cell naming its row and column. The
sandbox parses that evidence strictly
(``EvidenceRefused`` otherwise), checks that it belongs to the emitted table (same rows, the same
value in every cell: a table changed after the helper made it is not what the evidence describes),
and runs every registered disclosure rule (``policies.rules``) on each cell. The verdicts go to the
reviewers, never to the analyst of a real run, marked advisory: the helper ran beside the script,
on data the script may have transformed first, and it counts rows, not privacy units.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from jobs.script.outputs import MAX_COLUMNS, MAX_ROWS
from policies.evidence import ORDER_STATISTICS, CellEvidence
from policies.model import Aggregate, Disclosure
from policies.rules import RULES, CellStatus, worst

AGGREGATES = {"count": Aggregate.COUNT, "sum": Aggregate.SUM, "avg": Aggregate.AVG}
MODELS = frozenset({"ols", "logit"})
GRIDS = frozenset({"pivot_table", "describe"})  # helpers whose evidence is a grid: each cell names its row and column
GRID_AGGREGATES = {
    a.value: a for a in (*AGGREGATES.values(), Aggregate.MIN, Aggregate.MAX, Aggregate.MEDIAN, Aggregate.QUANTILE, Aggregate.STDDEV)
}
MAX_TOP = 10
COLUMN = {Aggregate.COUNT: "count", Aggregate.SUM: "sum", Aggregate.AVG: "mean"}  # the helper's value column


class EvidenceRefused(Exception):
    """Evidence that is malformed (the message quotes no value)."""


def judge(found: Any, table: pa.Table, settings: Disclosure) -> dict[str, Any]:
    """The rules' verdicts on each cell of ``table`` from the helper's ``found`` evidence (parsed JSON)."""
    if isinstance(found, dict) and found.get("helper") in MODELS:
        return _model(found, table, settings)
    if isinstance(found, dict) and found.get("helper") in GRIDS:
        return _grid(found, table, settings)
    if not isinstance(found, dict) or found.get("helper") != "crosstab" or found.get("aggregate") not in AGGREGATES:
        raise EvidenceRefused("the evidence is not a crosstab helper's")
    aggregate = AGGREGATES[found["aggregate"]]
    cells = found.get("cells")
    if not isinstance(cells, list) or len(cells) > MAX_ROWS:
        raise EvidenceRefused(f"the evidence holds at most {MAX_ROWS} cells")
    evidence = [_cell(aggregate, cell) for cell in cells]
    return _verdicts(
        "crosstab", [{"row": row} for row in range(len(evidence))], evidence, _matches(table, COLUMN[aggregate], evidence), settings
    )


def _verdicts(
    helper: str, places: list[dict[str, Any]], evidence: list[CellEvidence], matches: bool, settings: Disclosure
) -> dict[str, Any]:
    """Every registered rule on each cell; the cells whose worst verdict is not pass are listed at their ``places``."""
    verdicts: list[dict[str, Any]] = []
    statuses = [CellStatus.PASS]
    for place, cell in zip(places, evidence, strict=True):
        judged = [rule(cell, settings) for rule in RULES.values()]
        status = worst(v.status for v in judged)
        if status is not CellStatus.PASS:
            first = next(v for v in judged if v.status is status)
            statuses.append(status)
            verdicts.append({**place, "status": status.value, "rule": first.rule, "reason": first.reason, "evidence": first.evidence})
    return {
        "helper": helper,
        "advisory": True,
        "counts": "rows, not privacy units",
        "matches_table": matches,
        "status": worst(statuses).value,
        "cells": len(evidence),
        "flagged": verdicts,
    }


def _grid(found: dict[str, Any], table: pa.Table, settings: Disclosure) -> dict[str, Any]:
    """A pivot table's or a describe's evidence: per cell its row, its column, its aggregate and what a crosstab's cell holds."""
    rows, cells = found.get("rows"), found.get("cells")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= MAX_ROWS:
        raise EvidenceRefused(f"a grid's evidence states its rows, at most {MAX_ROWS}")
    if not isinstance(cells, list) or len(cells) > rows * MAX_COLUMNS:
        raise EvidenceRefused(f"a grid's evidence holds at most {MAX_COLUMNS} cells a row")
    places: list[dict[str, Any]] = []
    evidence: list[CellEvidence] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("aggregate") not in GRID_AGGREGATES:
            raise EvidenceRefused(f"each cell's evidence is an object naming its aggregate, one of {sorted(GRID_AGGREGATES)}")
        row, column = cell.get("row"), cell.get("column")
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < rows or not isinstance(column, str) or len(column) > 1_000:
            raise EvidenceRefused("each cell's evidence names a row of the table and a column")
        places.append({"row": row, "column": column})
        evidence.append(_cell(GRID_AGGREGATES[cell["aggregate"]], cell))
    if len({(p["row"], p["column"]) for p in places}) != len(places):
        raise EvidenceRefused("each cell has its evidence once")
    return _verdicts(str(found["helper"]), places, evidence, _grid_matches(table, rows, places, evidence), settings)


def _model(found: dict[str, Any], table: pa.Table, settings: Disclosure) -> dict[str, Any]:
    """A model's evidence: its residual degrees of freedom against ``dof_threshold`` (the rule of ``jobs.stats.models``)."""
    stated, nobs, coef = found.get("dof"), found.get("nobs"), found.get("coef")
    if not _finite(stated) or not isinstance(nobs, int) or isinstance(nobs, bool) or nobs < 0:
        raise EvidenceRefused("a model's evidence states its residual degrees of freedom and observations")
    assert isinstance(stated, int | float)  # checked above; for the type checker
    dof = float(stated)
    if not isinstance(coef, list) or len(coef) > MAX_ROWS or not all(_finite(c) for c in coef):
        raise EvidenceRefused("a model's evidence states its coefficients")
    shown = table.column("coef").to_pylist() if "coef" in table.column_names else []
    matches = len(shown) == len(coef) and all(
        value is not None and math.isclose(float(value), float(c), rel_tol=1e-9, abs_tol=1e-12)
        for value, c in zip(shown, coef, strict=True)
    )
    flagged = []
    if dof < settings.dof_threshold:
        reason = f"residual degrees of freedom {dof:g} are below the threshold {settings.dof_threshold}"
        flagged.append({"row": None, "status": CellStatus.SUPPRESS.value, "rule": "dof", "reason": reason, "evidence": {"dof": dof}})
    return {
        "helper": found["helper"],
        "advisory": True,
        "counts": "rows, not privacy units",
        "matches_table": matches,
        "status": (CellStatus.SUPPRESS if flagged else CellStatus.PASS).value,
        "cells": len(coef),
        "nobs": nobs,
        "flagged": flagged,
    }


def _cell(aggregate: Aggregate, cell: Any) -> CellEvidence:
    if not isinstance(cell, dict):
        raise EvidenceRefused("each cell's evidence is an object")
    units, top, total = cell.get("units"), cell.get("top", []), cell.get("total")
    negative, missing = cell.get("negative", 0), cell.get("missing", 0)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in (units, negative, missing)):
        raise EvidenceRefused("a cell's counts are non-negative integers")
    if not isinstance(top, list) or len(top) > MAX_TOP or not all(_finite(v) for v in top):
        raise EvidenceRefused(f"a cell's largest contributions are at most {MAX_TOP} finite numbers")
    if total is not None and not _finite(total):
        raise EvidenceRefused("a cell's total is a finite number")
    value = cell.get("value")
    if value is not None and not _finite(value):
        raise EvidenceRefused("a cell's value is a finite number")
    assert isinstance(units, int)  # checked above; for the type checker
    below, above = cell.get("below"), cell.get("above")
    if aggregate in ORDER_STATISTICS and value is not None:  # the rule suppresses an order statistic without them
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= units for n in (below, above)):
            raise EvidenceRefused("an order statistic's evidence counts the rows at or below it and at or above it")
    else:
        below = above = None
    return CellEvidence(aggregate, value, units, tuple(float(v) for v in top), total, negative, missing, below, above)


def _finite(value: Any) -> bool:
    """A finite float, or an integer a float holds exactly (a 400-digit integer overflows ``float``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) <= value <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def _matches(table: pa.Table, column: str, evidence: list[CellEvidence]) -> bool:
    """Whether the emitted table is the helper's: as many rows, and in its value column the evidence's values."""
    if column not in table.column_names or table.num_rows != len(evidence):
        return False
    for shown, cell in zip(table.column(column).to_pylist(), evidence, strict=True):
        if (shown is None) != (cell.value is None):
            return False
        if shown is not None and not math.isclose(float(shown), float(cell.value), rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def _grid_matches(table: pa.Table, rows: int, places: list[dict[str, Any]], evidence: list[CellEvidence]) -> bool:
    """Whether the emitted table is the helper's grid: as many rows, each evidenced cell's value where it says, and no
    value in the grid's columns that no evidence covers (a value put into a cell the helper left empty)."""
    columns = {p["column"] for p in places}
    if table.num_rows != rows or not columns <= set(table.column_names):
        return False
    shown = {column: table.column(column).to_pylist() for column in columns}
    for place, cell in zip(places, evidence, strict=True):
        if not _same(shown[place["column"]][place["row"]], cell.value):
            return False
    covered = {(p["row"], p["column"]) for p in places}
    return all(value is None or (row, column) in covered for column in columns for row, value in enumerate(shown[column]))


def _same(shown: Any, value: Any) -> bool:
    if shown is None or value is None:
        return shown is None and value is None
    if isinstance(shown, bool) or not isinstance(shown, int | float):
        return False
    return math.isclose(float(shown), float(value), rel_tol=1e-9, abs_tol=1e-9)
