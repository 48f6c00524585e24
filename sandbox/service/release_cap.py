"""The cap on a grant's released cells (``Policy.max_released_cells``), checked in the releasing transaction.

Threat: on the exact-answer path each released number is a linear equation about the data, and
enough of them reconstruct it (Dinur and Nissim, 2003), however well each one passed output control.
The cap bounds how many numbers one grant collects over a rolling window or its life.

``admit`` runs where a job becomes released (the queue's ``finish``, an auditor's final release),
before any budget is charged: it locks the grant row and adds up the cells of the grant's released
jobs from the database, so two jobs releasing at once on two workers are serialised (PostgreSQL:
the row lock; SQLite: the writer's ``BEGIN IMMEDIATE``) and the second sees the first's cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.values import JobStatus
from sandbox.models import Grant, Job
from sandbox.service.grants import current_policy

CAP_REACHED = "the grant's cap on released cells is reached"


@dataclass(frozen=True)
class Admission:
    """Whether the job's cells fit, and what the ledger records of the cap (counts only, never a value)."""

    fits: bool
    details: dict[str, Any]


def admit(session: Session, job: Job, now: datetime | None = None) -> Admission:
    """Lock the job's grant and check its ``released_cells`` against the current policy's cap.

    The cap is the grant's current policy's (a steward who lowers it is obeyed at once, also by jobs
    pinned to an earlier policy version). No cap: always fits, and nothing is locked.
    """
    cells = job.released_cells or 0
    grant = session.get(Grant, job.grant_id)
    current = current_policy(grant) if grant is not None else None
    cap = current[0].max_released_cells if current is not None else None
    if cap is None:
        return Admission(True, {"released_cells": cells})
    session.scalar(select(Grant.id).where(Grant.id == job.grant_id).with_for_update())
    since = None if cap.period_days is None else (now or datetime.now(UTC)) - timedelta(days=cap.period_days)
    used = released_so_far(session, job.grant_id, since)
    details = {"released_cells": cells, "cap": {"cells": cap.cells, "period_days": cap.period_days, "used_before": used}}
    return Admission(used + cells <= cap.cells, details)


# Decisions count like releases: that a job was blocked by output control, or rejected by a reviewer,
# depends on the data as much as a released number does (a blocked job counts the cells of the form it
# would have released when it has one, else one cell: ``queue.finish``).
COUNTED = (JobStatus.RELEASED.value, JobStatus.BLOCKED.value, JobStatus.REJECTED.value)


def released_so_far(session: Session, grant_id: str, since: datetime | None) -> int:
    """The cells of the grant's released, blocked and rejected jobs (finished at or after ``since``, when given)."""
    query = select(func.coalesce(func.sum(Job.released_cells), 0)).where(Job.grant_id == grant_id, Job.status.in_(COUNTED))
    if since is not None:
        query = query.where(Job.finished_at >= since)
    return int(session.scalar(query) or 0)
