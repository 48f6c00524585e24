"""What the release audit's decision does to a job: withhold its failing rows, or hold the job.

Under ``auto`` the failing rows' cells are withheld (a table left with nothing is blocked); under
``review_on_flag`` the job is held with those cells flagged; a job held anyway (``always_review``,
other flags) keeps its populations unreleased, and is audited again when an auditor releases it --
against everything released by then. A row fails when it fails on any dataset version it reads.
The analyst sees such a cell like any other withheld cell (``sandbox.api.analyst_view``): no count,
no rule, no earlier job. The findings (rule, earlier job, sizes) go to ``audit_findings``, for
auditors, who see them beside a held output (``GET /reviews``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyroaring import BitMap
from sqlalchemy.orm import Session

from core.values import JobStatus
from crypto.keyring import KeyStore
from jobs.released import Released
from policies import audit
from policies.model import ReleaseMode
from policies.output_control import CellStatus
from sandbox.models import Job
from sandbox.runtime import release_audit
from sandbox.runtime.definition import Populations

RULE = "release_audit"
WITHHELD = "withheld: with earlier releases of the dataset version it would disclose fewer than k units (see the audit findings)"
NOTHING_LEFT = "no cell passed output control"
FLAGGED = "cells flagged for review"


@dataclass(frozen=True)
class Audited:
    status: JobStatus
    reason: str
    released: Released | None  # the amended form, when the audit changed it


def on_finish(
    session: Session, keys: KeyStore, job: Job, populations: Sequence[Populations], status: JobStatus, reason: str, released: Released
) -> Audited:
    """The worker's release (or hold) of ``job``: audit its rows, store their populations, amend the form."""
    cells = {p.version_id: {row: BitMap.deserialize(data) for row, data in p.bitmaps.items()} for p in populations}
    policy = release_audit.pinned_policy(session, job)
    decisions = _check(session, keys, job, cells, policy.disclosure.threshold)
    failing = _failing(cells, decisions)
    if status is JobStatus.HELD or (failing and policy.release_mode is ReleaseMode.REVIEW_ON_FLAG):
        for version_id, rows in cells.items():
            release_audit.store(session, keys, job, version_id, rows, released=False)
        if status is JobStatus.HELD:
            return Audited(status, reason, None)
        return Audited(JobStatus.HELD, FLAGGED, amend(released, failing, CellStatus.REVIEW))
    _store_kept(session, keys, job, cells, decisions, failing)
    if not failing:
        return Audited(status, reason, None)
    amended = amend(released, failing, CellStatus.SUPPRESS)
    if not _any_released(amended):
        return Audited(JobStatus.BLOCKED, NOTHING_LEFT, amended)
    return Audited(status, reason, amended)


def on_review(session: Session, keys: KeyStore, job: Job, released: Released) -> Audited:
    """An auditor's final release of a held job: audit its stored rows again now; withhold those that fail."""
    cells = release_audit.held(session, keys, job.id)
    if not cells:
        return Audited(JobStatus.RELEASED, "", None)
    release_audit.forget_findings(session, job.id)
    release_audit.forget_held(session, job.id)
    policy = release_audit.pinned_policy(session, job)
    decisions = _check(session, keys, job, cells, policy.disclosure.threshold)
    failing = _failing(cells, decisions)
    _store_kept(session, keys, job, cells, decisions, failing)
    if not failing:
        return Audited(JobStatus.RELEASED, "", None)
    amended = amend(released, failing, CellStatus.SUPPRESS)
    if not _any_released(amended):
        return Audited(JobStatus.BLOCKED, NOTHING_LEFT, amended)
    return Audited(JobStatus.RELEASED, "", amended)


def _check(session: Session, keys: KeyStore, job: Job, cells: Mapping[str, dict[int, BitMap]], k: int) -> dict[str, audit.Decision]:
    return {version_id: release_audit.check(session, keys, job, version_id, rows, k) for version_id, rows in sorted(cells.items())}


def _failing(cells: Mapping[str, dict[int, BitMap]], decisions: Mapping[str, audit.Decision]) -> set[int]:
    return {row for version_id, rows in cells.items() for row in rows if row not in decisions[version_id].kept}


def _store_kept(
    session: Session,
    keys: KeyStore,
    job: Job,
    cells: Mapping[str, dict[int, BitMap]],
    decisions: Mapping[str, audit.Decision],
    failing: set[int],
) -> None:
    """Store the released rows' populations; a version's computed span is reused when it holds exactly those rows."""
    for version_id, rows in cells.items():
        kept = {row: population for row, population in rows.items() if row not in failing}
        decision = decisions[version_id]
        span = decision.span if set(decision.kept) == set(kept) else None
        release_audit.store(session, keys, job, version_id, kept, released=True, span=span)


def amend(released: Released, rows: set[int], status: CellStatus) -> Released:
    """``released`` with every aggregate of ``rows`` noted (and, when suppressed, emptied); counts recomputed."""
    aggregates = [c["name"] for c in released["columns"] if c["kind"] == "aggregate"]
    notes: dict[tuple[int, str], Mapping[str, object]] = {(n["row"], n["column"]): n for n in released["notes"]}
    table = [dict(r) for r in released["rows"]]
    for row in sorted(rows):
        for column in aggregates:
            current = notes.get((row, column))
            if current is not None and current["status"] in {CellStatus.SUPPRESS.value, CellStatus.BLOCK.value}:
                continue
            notes[(row, column)] = {"row": row, "column": column, "status": status.value, "rule": RULE, "reason": WITHHELD}
            if status is CellStatus.SUPPRESS:
                table[row][column] = None
    ordered = [dict(notes[key]) for key in sorted(notes, key=lambda key: (key[0], str(key[1])))]
    withheld = sum(1 for n in ordered if n["status"] in {CellStatus.SUPPRESS.value, CellStatus.BLOCK.value})
    flagged = sum(1 for n in ordered if n["status"] == CellStatus.REVIEW.value)
    summary = {**released["summary"], "suppressed": withheld, "flagged": flagged}
    return {**released, "rows": table, "notes": ordered, "summary": summary}


def _any_released(released: Released) -> bool:
    aggregates = [c["name"] for c in released["columns"] if c["kind"] == "aggregate"]
    hidden = {(n["row"], n["column"]) for n in released["notes"] if n["status"] in {CellStatus.SUPPRESS.value, CellStatus.BLOCK.value}}
    return any((row, column) not in hidden for row in range(len(released["rows"])) for column in aggregates)


__all__ = ["FLAGGED", "NOTHING_LEFT", "WITHHELD", "Audited", "amend", "on_finish", "on_review"]
