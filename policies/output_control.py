"""Output control: run the disclosure rules over a result table, withhold what fails, protect what was
withheld from recovery through the margins, and round what is released.

The rules and their typed verdicts live in ``policies.rules`` (re-exported here: ``CellStatus``,
``Verdict``, ``worst``, ``RULES``, ``rule``). The evidence each rule reads (distinct privacy units
behind a cell, top contributors, ...) is computed by the query engine alongside the result, under
the contract of ``policies.evidence``, never by pulling rows into Python.

The stages, in order: rules (each cell keeps its worst verdict) -> secondary suppression (tables
with margins, when the policy asks for it) -> rounding of released counts and totals (when the
policy asks for it). Suppression always comes before rounding, as in ACRO, so that a rounded value
never stands in for a withheld one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from policies.evidence import GROUPING_COLUMN, CellEvidence, Output, evidence_rows, is_evidence, negative_column
from policies.model import Aggregate, Disclosure
from policies.rules import RULES, CellStatus, Rule, Verdict, rule, threshold, worst
from policies.secondary import Key, Limits, protect

__all__ = [
    "RULES",
    "CellStatus",
    "Controlled",
    "Note",
    "Rule",
    "Verdict",
    "control",
    "rule",
    "threshold",
    "worst",
    "worst_verdict",
]

ADDITIVE = frozenset({Aggregate.COUNT, Aggregate.SUM})  # take part in a table's margins
ROUNDED = frozenset({Aggregate.COUNT, Aggregate.COUNT_DISTINCT, Aggregate.SUM})
WITHHELD = frozenset({CellStatus.SUPPRESS, CellStatus.BLOCK})
TABLE_ROW = -1  # a note's row when it speaks of the whole table


@dataclass(frozen=True)
class Note:
    """A withheld or flagged cell (or, with row ``TABLE_ROW``, the whole table) and why.

    ``evidence`` is what the rule measured; it is for auditors and is not part of ``as_dict``,
    which is what analysts receive.
    """

    row: int
    column: str
    status: CellStatus
    rule: str
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "status": self.status.value, "rule": self.rule, "reason": self.reason}

    def for_auditor(self) -> dict[str, Any]:
        return {**self.as_dict(), "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class Controlled:
    released: pa.Table  # group keys and aggregates; withheld cells are null; no evidence columns
    notes: tuple[Note, ...]
    status: CellStatus  # the job's verdict: BLOCK when nothing can be released
    reason: str
    cells: int
    suppressed: int  # withheld cells, complements included
    rounded: bool = False  # counts and totals were rounded to the policy's base (one table note says so)
    complements: int = 0  # cells withheld only to protect others from subtraction (secondary suppression)

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "rows": self.released.num_rows,
            "cells": self.cells,
            "suppressed": self.suppressed,
            "complements": self.complements,
            "rounded": self.rounded,
        }


def control(
    table: pa.Table,
    outputs: Sequence[Output],
    unit_columns: Sequence[str],
    settings: Disclosure,
    rules: Sequence[str] | None = None,
    limits: Limits | None = None,
) -> Controlled:
    """Run the named rules (all registered rules when ``None``) on every aggregate cell; withhold cells
    that do not pass, add complements when the table has margins, round what is released.

    ``limits`` bound secondary suppression (``policies.lp_audit.Limits``, its defaults when ``None``):
    past them it raises ``TooExpensive`` and nothing is released.

    Withheld means SUPPRESS or BLOCK; a REVIEW cell stays in ``released`` for the release decision.
    An unknown rule name is a configuration error (``KeyError``), never silently skipped.
    """
    chosen = [RULES[name] for name in (list(RULES) if rules is None else rules)]
    verdicts = judge(table, outputs, unit_columns, settings, chosen)
    complements = 0
    if settings.secondary_suppression and GROUPING_COLUMN in table.column_names:
        verdicts, complements = _protect_margins(table, outputs, verdicts, settings, limits)
    released = _withhold(table, outputs, verdicts)
    notes = tuple(
        Note(i, name, verdict.status, verdict.rule, verdict.reason, verdict.evidence)
        for i, row in enumerate(verdicts)
        for name, verdict in row.items()
        if verdict.status is not CellStatus.PASS
    )
    cells = table.num_rows * len(outputs)
    suppressed = sum(1 for n in notes if n.status in WITHHELD)
    if cells in {0, suppressed}:
        return Controlled(released, notes, CellStatus.BLOCK, "no cell passed output control", cells, suppressed, False, complements)
    rounded = settings.rounding and any(o.aggregate in ROUNDED for o in outputs)
    if rounded:
        released = _round(released, outputs, settings.round_base)
        notes = (*notes, _rounding_note(settings.round_base))
    status = worst(v.status for row in verdicts for v in row.values())
    return Controlled(released, notes, status, "", cells, suppressed, rounded, complements)


def judge(
    table: pa.Table, outputs: Sequence[Output], unit_columns: Sequence[str], settings: Disclosure, rules: Sequence[Rule]
) -> list[dict[str, Verdict]]:
    """Per row, per aggregate output, the worst verdict of the rules on that cell's evidence."""
    units = _min_units(table, unit_columns)
    names = {o.name for o in outputs}
    columns_py = {name: table.column(name).to_pylist() for name in table.column_names if is_evidence(name) or name in names}
    evidence: list[dict[str, CellEvidence]] = evidence_rows(columns_py, outputs, units)
    return [{name: worst_verdict([check(cell, settings) for check in rules]) for name, cell in row.items()} for row in evidence]


def worst_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """The most severe verdict, the first registered rule on ties; no verdict at all is a review."""
    if not verdicts:
        return Verdict(CellStatus.REVIEW, "none", "no rule checked this cell")
    return max(verdicts, key=lambda v: v.status.severity)


def _protect_margins(
    table: pa.Table, outputs: Sequence[Output], verdicts: list[dict[str, Verdict]], settings: Disclosure, limits: Limits | None
) -> tuple[list[dict[str, Verdict]], int]:
    """Secondary suppression over each additive output of a table with margins (``__grouping``).

    Primaries are the cells the rules withheld or sent to review (a reviewed cell may still be
    withheld later, so it is protected now). Counts need an interval at least ``threshold`` wide;
    totals at least ``p_ratio`` times the largest withheld total (so no withheld total is pinned to
    an interval narrower than p times itself), or 1 when those are all 0. Counts, and totals with no negative
    contributor, are known to be non-negative. A complement withholds its whole row: a mean or a
    count left beside a withheld total would give it back (total = mean x count).
    """
    keys = _margin_keys(table, outputs)
    if keys is None:
        return verdicts, 0
    rows: set[int] = set()
    for out in (o for o in outputs if o.aggregate in ADDITIVE):
        values = [float(v) if v is not None else 0.0 for v in table.column(out.name).to_pylist()]
        primary = [i for i, row in enumerate(verdicts) if row[out.name].status is not CellStatus.PASS]
        if not primary:
            continue
        if out.aggregate is Aggregate.COUNT:
            width, nonnegative = float(settings.threshold), True
        else:
            width = settings.p_ratio * max(abs(values[i]) for i in primary) or 1.0
            nonnegative = not _has_negative(table, out.name)
        rows |= protect(keys, values, primary, width, nonnegative, limits).complements
    reason = "withheld so that suppressed cells cannot be worked out from the margins"
    complement = Verdict(CellStatus.SUPPRESS, "secondary_suppression", reason, {"complement": True})
    changed = [
        {name: complement if i in rows and v.status is CellStatus.PASS else v for name, v in row.items()} for i, row in enumerate(verdicts)
    ]
    count = sum(1 for i in rows for v in verdicts[i].values() if v.status is CellStatus.PASS)
    return changed, count


def _margin_keys(table: pa.Table, outputs: Sequence[Output]) -> list[Key] | None:
    """Each row's key over the dimension columns, ``None`` where ``__grouping`` marks a margin.

    The dimensions are the columns that are neither outputs nor evidence, in table order, which is
    the order of ``GROUPING(d0, d1, ...)``: DuckDB sets the bit ``2**(d-1-j)`` for dimension j. A
    concrete value is wrapped in a 1-tuple so that a real NULL group stays distinct from a margin.
    """
    names = {o.name for o in outputs}
    dims = [c for c in table.column_names if not is_evidence(c) and c not in names]
    if not dims:
        return None
    grouping = [int(g or 0) for g in table.column(GROUPING_COLUMN).to_pylist()]
    values = [table.column(c).to_pylist() for c in dims]
    d = len(dims)
    return [tuple(None if g >> (d - 1 - j) & 1 else (values[j][i],) for j in range(d)) for i, g in enumerate(grouping)]


def _has_negative(table: pa.Table, output: str) -> bool:
    name = negative_column(output)
    if name not in table.column_names:
        return False
    return any((v or 0) > 0 for v in table.column(name).to_pylist())


def _withhold(table: pa.Table, outputs: Sequence[Output], verdicts: list[dict[str, Verdict]]) -> pa.Table:
    """The table without evidence columns, each withheld cell set to null."""
    names = {o.name for o in outputs}
    columns = {}
    for name in table.column_names:
        if is_evidence(name):
            continue
        column = table.column(name)
        if name in names:
            keep = pa.array([row[name].status not in WITHHELD for row in verdicts], pa.bool_())
            column = pc.if_else(keep, column, pa.scalar(None, column.type))
        columns[name] = column
    return pa.table(columns)


def _round(table: pa.Table, outputs: Sequence[Output], base: int) -> pa.Table:
    """Released counts and totals to the nearest multiple of ``base``, halves to even.

    ACRO's ``round_table``: ``(x / base).round() * base``, and pandas rounds halves to even; nulls
    (withheld cells) stay null. The column keeps its type.
    """
    for out in outputs:
        if out.aggregate not in ROUNDED:
            continue
        column = table.column(out.name)
        as_float = pc.cast(column, pa.float64())
        rounded = pc.multiply(pc.round(pc.divide(as_float, float(base)), round_mode="half_to_even"), float(base))
        table = table.set_column(table.schema.get_field_index(out.name), out.name, pc.cast(rounded, column.type, safe=False))
    return table


def _rounding_note(base: int) -> Note:
    reason = f"counts and totals are rounded to the nearest multiple of {base} (halves to even); margins may not add up"
    return Note(TABLE_ROW, "*", CellStatus.PASS, "rounding", reason, {"base": base})


def _min_units(table: pa.Table, unit_columns: Sequence[str]) -> list[int]:
    if not unit_columns:
        return [0] * table.num_rows  # no evidence: every cell fails the threshold
    smallest = table.column(unit_columns[0])
    for name in unit_columns[1:]:
        smallest = pc.min_element_wise(smallest, table.column(name))
    return [int(v) if v is not None else 0 for v in smallest.to_pylist()]
