"""The release decision: output control's verdicts and the grant's release mode.

Suppression is applied automatically. Cells flagged for review are withheld under ``auto`` and
hold the output for an auditor under ``review_on_flag``; ``always_review`` holds everything; a
table with nothing releasable is blocked. The rows with a cell to release are returned: their populations
are audited against every earlier release of the version before anything leaves (``policies.audit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.values import JobStatus
from policies.model import Policy, ReleaseMode
from policies.output_control import CellStatus, Controlled, Note


@dataclass(frozen=True)
class Release:
    status: JobStatus
    reason: str
    table: pa.Table  # what the analyst would receive
    notes: tuple[Note, ...]
    summary: dict[str, Any]
    rows: list[int] = field(default_factory=list)  # rows with a cell to release: the release audit checks their populations


def released_rows(controlled_notes: Sequence[Note], rows: int, aggregates: Sequence[str]) -> list[int]:
    withheld: dict[int, int] = {}
    for note in controlled_notes:
        if note.status is not CellStatus.REVIEW:
            withheld[note.row] = withheld.get(note.row, 0) + 1
    return [i for i in range(rows) if withheld.get(i, 0) < len(aggregates)]


def decide(controlled: Controlled, extra: Sequence[Note], aggregates: Sequence[str], policy: Policy) -> Release:
    """Combine output control's notes with further flags under the release mode."""
    mode = policy.release_mode
    flagged = [
        Note(n.row, n.column, CellStatus.SUPPRESS if mode is ReleaseMode.AUTO else CellStatus.REVIEW, n.rule, n.reason) for n in extra
    ]
    notes = _merge(controlled.notes, flagged)
    if mode is ReleaseMode.AUTO:
        notes = tuple(Note(n.row, n.column, CellStatus.SUPPRESS, n.rule, n.reason) if n.status is CellStatus.REVIEW else n for n in notes)
    table = _withhold(controlled.released, notes)
    withheld = sum(1 for n in notes if n.status in (CellStatus.SUPPRESS, CellStatus.BLOCK))
    review = sum(1 for n in notes if n.status is CellStatus.REVIEW)
    cells = len(aggregates) * controlled.released.num_rows
    summary = {**controlled.summary(), "suppressed": withheld, "flagged": review}
    if controlled.status is CellStatus.BLOCK or cells in {0, withheld}:
        reason = controlled.reason or "no cell passed output control"
        return Release(JobStatus.BLOCKED, reason, table, notes, summary | {"status": "block", "reason": reason})
    released = released_rows(notes, controlled.released.num_rows, aggregates)
    if review or mode is ReleaseMode.ALWAYS_REVIEW:
        reason = "cells flagged for review" if review else "the policy holds every output for review"
        return Release(JobStatus.HELD, reason, table, notes, summary, released)
    return Release(JobStatus.RELEASED, "", table, notes, summary, released)


def _merge(notes: Sequence[Note], extra: Sequence[Note]) -> tuple[Note, ...]:
    """One note per cell: the most severe."""
    best: dict[tuple[int, str], Note] = {}
    for note in [*notes, *extra]:
        current = best.get((note.row, note.column))
        if current is None or note.status.severity > current.status.severity:
            best[(note.row, note.column)] = note
    return tuple(sorted(best.values(), key=lambda n: (n.row, n.column)))


def _withhold(table: pa.Table, notes: Sequence[Note]) -> pa.Table:
    hidden: dict[str, set[int]] = {}
    for note in notes:
        if note.status in (CellStatus.SUPPRESS, CellStatus.BLOCK):
            hidden.setdefault(note.column, set()).add(note.row)
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name in hidden:
            keep = pa.array([i not in hidden[name] for i in range(table.num_rows)], pa.bool_())
            column = pc.if_else(keep, column, pa.scalar(None, column.type))
        columns[name] = column
    return pa.table(columns)
