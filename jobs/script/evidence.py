"""The disclosure evidence of a script's helper tables (``sandbox_io.crosstab``), judged by the grant's rules — as advice.

A helper computes, inside the sandbox, a table and per cell the rows behind it, the largest
contributions, the total, the negative and missing values. The sandbox parses that evidence strictly
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

from jobs.script.outputs import MAX_ROWS
from policies.evidence import CellEvidence
from policies.model import Aggregate, Disclosure
from policies.rules import RULES, CellStatus, worst

AGGREGATES = {"count": Aggregate.COUNT, "sum": Aggregate.SUM, "avg": Aggregate.AVG}
MODELS = frozenset({"ols", "logit"})
MAX_TOP = 10
COLUMN = {Aggregate.COUNT: "count", Aggregate.SUM: "sum", Aggregate.AVG: "mean"}  # the helper's value column


class EvidenceRefused(Exception):
    """Evidence that is malformed (the message quotes no value)."""


def judge(found: Any, table: pa.Table, settings: Disclosure) -> dict[str, Any]:
    """The rules' verdicts on each cell of ``table`` from the helper's ``found`` evidence (parsed JSON)."""
    if isinstance(found, dict) and found.get("helper") in MODELS:
        return _model(found, table, settings)
    if not isinstance(found, dict) or found.get("helper") != "crosstab" or found.get("aggregate") not in AGGREGATES:
        raise EvidenceRefused("the evidence is not a crosstab helper's")
    aggregate = AGGREGATES[found["aggregate"]]
    cells = found.get("cells")
    if not isinstance(cells, list) or len(cells) > MAX_ROWS:
        raise EvidenceRefused(f"the evidence holds at most {MAX_ROWS} cells")
    evidence = [_cell(aggregate, cell) for cell in cells]
    matches = _matches(table, COLUMN[aggregate], evidence)
    verdicts: list[dict[str, Any]] = []
    statuses = [CellStatus.PASS]
    for row, cell in enumerate(evidence):
        judged = [rule(cell, settings) for rule in RULES.values()]
        status = worst(v.status for v in judged)
        if status is not CellStatus.PASS:
            first = next(v for v in judged if v.status is status)
            statuses.append(status)
            verdicts.append({"row": row, "status": status.value, "rule": first.rule, "reason": first.reason, "evidence": first.evidence})
    overall = worst(statuses)
    return {
        "helper": "crosstab",
        "advisory": True,
        "counts": "rows, not privacy units",
        "matches_table": matches,
        "status": overall.value,
        "cells": len(evidence),
        "flagged": verdicts,
    }


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
    return CellEvidence(aggregate, value, units, tuple(float(v) for v in top), total, negative, missing)


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
