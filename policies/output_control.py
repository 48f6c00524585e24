"""Output control: disclosure rules over a result table, with typed verdicts and a registry of rules.

Each rule is a small pure function from one cell's evidence to a ``Verdict`` (status, reason,
evidence), registered by name. Verdicts combine by taking the worst; no verdict at all is never a
pass. The evidence (distinct privacy units behind a cell, ...) is computed by the query engine
alongside the result, never by pulling rows into Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from policies.evidence import CellEvidence, Output, evidence_rows, is_evidence
from policies.model import Disclosure


class CellStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    SUPPRESS = "suppress"  # withheld from the release; the rest of the table may go out
    REVIEW = "review"  # an auditor must decide
    BLOCK = "block"  # never releasable, whatever a reviewer says

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {CellStatus.PASS: 0, CellStatus.SUPPRESS: 1, CellStatus.REVIEW: 2, CellStatus.BLOCK: 3}


def worst(statuses: Iterable[CellStatus]) -> CellStatus:
    """The most severe status; an empty set means nothing was checked, which is a review, not a pass."""
    found = list(statuses)
    if not found:
        return CellStatus.REVIEW
    return max(found, key=lambda s: s.severity)


@dataclass(frozen=True)
class Verdict:
    status: CellStatus
    rule: str
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


Rule = Callable[[CellEvidence, Disclosure], Verdict]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


@rule("threshold")
def threshold(cell: CellEvidence, settings: Disclosure) -> Verdict:
    """At least k distinct privacy units (people, enterprises) behind every cell, not k rows."""
    if cell.units < settings.threshold:
        return Verdict(
            CellStatus.SUPPRESS,
            "threshold",
            f"fewer than {settings.threshold} privacy units behind this cell",
            {"threshold": settings.threshold},
        )
    return Verdict(CellStatus.PASS, "threshold", "enough privacy units", {"threshold": settings.threshold})


@dataclass(frozen=True)
class Note:
    row: int
    column: str
    status: CellStatus
    rule: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "status": self.status.value, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True)
class Controlled:
    released: pa.Table  # group keys and aggregates; withheld cells are null; no evidence columns
    notes: tuple[Note, ...]
    status: CellStatus  # the job's verdict: BLOCK when nothing can be released
    reason: str
    cells: int
    suppressed: int

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "rows": self.released.num_rows,
            "cells": self.cells,
            "suppressed": self.suppressed,
        }


def control(
    table: pa.Table,
    outputs: Sequence[Output],
    unit_columns: Sequence[str],
    settings: Disclosure,
    rules: Sequence[str] = ("threshold",),
) -> Controlled:
    """Run the named rules on every aggregate cell; withhold cells that do not pass."""
    units = _min_units(table, unit_columns)
    columns_py = {
        name: table.column(name).to_pylist() for name in table.column_names if is_evidence(name) or name in {o.name for o in outputs}
    }
    evidence = evidence_rows(columns_py, outputs, units)
    verdicts = [{name: worst_verdict([RULES[r](cell, settings) for r in rules]) for name, cell in row.items()} for row in evidence]
    released = _withhold(table, outputs, verdicts)
    notes = tuple(
        Note(i, name, verdict.status, verdict.rule, verdict.reason)
        for i, row in enumerate(verdicts)
        for name, verdict in row.items()
        if verdict.status is not CellStatus.PASS
    )
    cells = table.num_rows * len(outputs)
    suppressed = sum(1 for n in notes if n.status is not CellStatus.REVIEW)
    if cells in {0, suppressed}:
        return Controlled(released, notes, CellStatus.BLOCK, "no cell passed output control", cells, suppressed)
    return Controlled(released, notes, worst(v.status for row in verdicts for v in row.values()), "", cells, suppressed)


def _withhold(table: pa.Table, outputs: Sequence[Output], verdicts: list[dict[str, Verdict]]) -> pa.Table:
    """The table without evidence columns, each withheld cell set to null."""
    names = {o.name for o in outputs}
    columns = {}
    for name in table.column_names:
        if is_evidence(name):
            continue
        column = table.column(name)
        if name in names:
            keep = pa.array([row[name].status in (CellStatus.PASS, CellStatus.REVIEW) for row in verdicts], pa.bool_())
            column = pc.if_else(keep, column, pa.scalar(None, column.type))
        columns[name] = column
    return pa.table(columns)


def worst_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    if not verdicts:
        return Verdict(CellStatus.REVIEW, "none", "no rule checked this cell")
    return max(verdicts, key=lambda v: v.status.severity)


def _min_units(table: pa.Table, unit_columns: Sequence[str]) -> list[int]:
    if not unit_columns:
        return [0] * table.num_rows  # no evidence: every cell fails the threshold
    smallest = table.column(unit_columns[0])
    for name in unit_columns[1:]:
        smallest = pc.min_element_wise(smallest, table.column(name))
    return [int(v) if v is not None else 0 for v in smallest.to_pylist()]
