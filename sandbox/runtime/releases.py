"""The release decision: output control's verdicts, the differencing check, and the grant's release mode.

Suppression is applied automatically. Cells flagged for review are withheld under ``auto`` and
hold the output for an auditor under ``review_on_flag``; ``always_review`` holds everything; a
table with nothing releasable is blocked. Released cells are recorded for later differencing checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.schema import DatasetSchema
from core.values import JobStatus
from jobs.engine import Engine
from jobs.query import QueryPlan
from jobs.query import validate as validate_query
from policies.model import Policy, ReleaseMode
from policies.output_control import CellStatus, Controlled, Note
from sandbox.db import Database
from sandbox.models import GrantPolicy, Job, ReleasedCell
from sandbox.runtime import differencing
from sandbox.service.jobs import QuerySpec


@dataclass(frozen=True)
class Release:
    status: JobStatus
    reason: str
    table: pa.Table  # what the analyst would receive
    notes: tuple[Note, ...]
    summary: dict[str, Any]
    cells: list[differencing.Cell] = field(default_factory=list)  # released rows, for later differencing checks


def released_rows(controlled_notes: Sequence[Note], rows: int, aggregates: Sequence[str]) -> list[int]:
    withheld: dict[int, int] = {}
    for note in controlled_notes:
        if note.status is not CellStatus.REVIEW:
            withheld[note.row] = withheld.get(note.row, 0) + 1
    return [i for i in range(rows) if withheld.get(i, 0) < len(aggregates)]


def decide(
    controlled: Controlled, extra: Sequence[Note], aggregates: Sequence[str], policy: Policy, keys: list[differencing.Key], units: list[int]
) -> Release:
    """Combine output control's notes with further flags (differencing) under the release mode."""
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
    rows = released_rows(notes, controlled.released.num_rows, aggregates)
    released = [differencing.Cell(keys[i], units[i]) for i in rows]
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


class Differencing:
    """Looks for earlier released cells of the same dataset version within k-1 units in size.

    Earlier releases to *every* organisation count: two enterprises could otherwise split a
    differencing attack between them (one asks the total, the other the total but one person).
    """

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine

    def flags(
        self,
        job: Job,
        plan: QueryPlan,
        policy: Policy,
        schemas: Mapping[str, DatasetSchema],
        tables: Mapping[str, pa.Table],
        cells: list[differencing.Cell],
    ) -> list[differencing.Finding]:
        """Cells whose population differs from an earlier released one by 1..k-1 units (single-table queries)."""
        if len(plan.datasets) != 1 or len(plan.unit_columns) != 1 or not cells:
            return []
        k = policy.disclosure.threshold
        version_id = job.dataset_versions[plan.datasets[0]]["version_id"]
        earlier = self._earlier(job, version_id, cells, k)
        pairs = differencing.candidates(cells, earlier, k)
        if not pairs:
            return []
        mine = self._populations(validate_query(QuerySpec.model_validate(job.spec).sql, policy, schemas), tables)
        return differencing.find(pairs, mine, lambda job_id: self._old_populations(job_id, schemas, tables), k)

    def _earlier(self, job: Job, version_id: str, cells: list[differencing.Cell], k: int) -> list[differencing.Earlier]:
        low, high = min(c.units for c in cells) - (k - 1), max(c.units for c in cells) + (k - 1)
        with self.db.sessions() as session:
            rows = session.execute(
                select(ReleasedCell.job_id, ReleasedCell.key, ReleasedCell.units)
                .join(Job, Job.id == ReleasedCell.job_id)
                .where(
                    ReleasedCell.dataset_version_id == version_id,
                    ReleasedCell.units.between(low, high),
                    ReleasedCell.job_id != job.id,
                    Job.spec_sha256 != job.spec_sha256,  # the same query over the same version covers the same people
                )
            ).all()
        return [differencing.Earlier(job_id, tuple(key), units) for job_id, key, units in rows]

    def own_jobs(self, job: Job, findings: Sequence[differencing.Finding]) -> set[str]:
        """The findings' earlier jobs that belong to ``job``'s organisation: only those may be named to it."""
        ids = {f.job_id for f in findings}
        if not ids:
            return set()
        with self.db.sessions() as session:
            return set(session.scalars(select(Job.id).where(Job.id.in_(ids), Job.org_id == job.org_id)))

    def _populations(self, plan: QueryPlan, tables: Mapping[str, pa.Table]) -> dict[differencing.Key, Any]:
        return differencing.populations(self.engine.run(differencing.population_sql(plan), tables), plan.group_keys)

    def _old_populations(
        self, job_id: str, schemas: Mapping[str, DatasetSchema], tables: Mapping[str, pa.Table]
    ) -> dict[differencing.Key, Any]:
        with self.db.sessions() as session:
            old = session.get(Job, job_id)
            assert old is not None
            pinned = session.scalars(
                select(GrantPolicy).where(GrantPolicy.grant_id == old.grant_id, GrantPolicy.version == old.policy_version)
            ).one()
        plan = validate_query(QuerySpec.model_validate(old.spec).sql, Policy.model_validate(pinned.policy), schemas)
        return self._populations(plan, tables)


def record(session: Session, job: Job, cells: Sequence[differencing.Cell]) -> None:
    """Remember released cells of a single-dataset query job for later differencing checks."""
    if len(job.dataset_versions) != 1 or job.kind != "query":
        return
    version_id = next(iter(job.dataset_versions.values()))["version_id"]
    for index, cell in enumerate(cells):
        session.add(
            ReleasedCell(
                job_id=job.id, dataset_version_id=version_id, org_id=job.org_id, row_index=index, key=list(cell.key), units=cell.units
            )
        )
