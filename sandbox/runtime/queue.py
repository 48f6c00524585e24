"""The database-backed job queue: claim with a lease, renew it with heartbeats, finish exactly once.

All transition methods are idempotent and guarded by the lease: a worker whose lease expired (it
was killed, or it stalled) can no longer change the job, so a job is released once even when two
workers ran it. Claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the
writer's ``BEGIN IMMEDIATE`` lock serialises claims to the same effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from core.errors import InternalError
from core.values import JobStage, JobStatus
from crypto.keyring import KeyStore
from jobs.released import cell_count
from sandbox.db import Database
from sandbox.models import Job, JobOutput
from sandbox.runtime import audited, he_score, outputs
from sandbox.runtime.definition import Outcome
from sandbox.service import budget, release_cap
from sandbox.service.jobs import transition_details
from sandbox.service.ledger import Ledger
from sandbox.service.release_cap import CAP_REACHED

EXHAUSTED = "privacy budget exhausted"
ACTIVE = (JobStatus.RUNNING.value, JobStatus.CHECKING.value)


@dataclass(frozen=True)
class Claimed:
    job_id: str
    attempt: int
    timeout_seconds: int  # the job's time limit, counted from the claim


def _now() -> datetime:
    return datetime.now(UTC)


class Queue:
    def __init__(self, db: Database, ledger: Ledger, worker_id: str, lease_seconds: float, keys: KeyStore | None = None) -> None:
        """``keys`` seal the populations a release stores and an output the release audit amends (a worker's queue has them)."""
        self.db, self.ledger, self.worker_id, self.lease = db, ledger, worker_id, timedelta(seconds=lease_seconds)
        self.keys = keys

    def claim(self) -> Claimed | None:
        """Take the oldest queued job, or one whose worker's lease expired; None when there is none."""
        while True:
            with self.db.writing() as session:
                now = _now()
                job = session.scalar(
                    select(Job)
                    .where(or_(Job.status == JobStatus.QUEUED.value, and_(Job.status.in_(ACTIVE), Job.lease_expires_at < now)))
                    .order_by(Job.created_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if job is None:
                    return None
                started = job.status != JobStatus.QUEUED.value  # its worker read the data, then died
                if job.cancel_requested:
                    self._end(session, job, JobStatus.CANCELLED, "cancelled by the analyst", spent=started)
                    continue
                if job.attempts >= job.max_attempts:
                    self._end(session, job, JobStatus.FAILED, f"no worker finished the job in {job.attempts} attempts", spent=started)
                    continue
                if not started and not budget.fits_now(session, job):  # spent by others since submission: never read
                    self._end(session, job, JobStatus.FAILED, EXHAUSTED)
                    continue
                retry = job.status != JobStatus.QUEUED.value
                job.status, job.stage, job.progress = JobStatus.RUNNING.value, JobStage.LOAD.value, 0.05
                job.attempts += 1
                job.lease_owner, job.lease_expires_at, job.heartbeat_at = self.worker_id, now + self.lease, now
                job.started_at = job.started_at or now
                action = "job.retry" if retry else "job.running"
                self.ledger.append(
                    session,
                    actor=f"worker:{self.worker_id}",
                    action=action,
                    object_type="job",
                    object_id=job.id,
                    details=transition_details(job, attempt=job.attempts),
                )
                return Claimed(job.id, job.attempts, job.timeout_seconds)

    def heartbeat(self, claimed: Claimed) -> tuple[bool, bool]:
        """Renew the lease. Returns (still ours, cancel requested)."""
        with self.db.writing() as session:
            now = _now()
            result = session.execute(
                update(Job)
                .where(Job.id == claimed.job_id, Job.lease_owner == self.worker_id, Job.attempts == claimed.attempt, Job.status.in_(ACTIVE))
                .values(lease_expires_at=now + self.lease, heartbeat_at=now)
                .returning(Job.cancel_requested)
            ).first()
        if result is None:
            return False, False
        return True, bool(result[0])

    def stage(self, claimed: Claimed, stage: JobStage, progress: float) -> bool:
        with self.db.writing() as session:
            values: dict[str, Any] = {"stage": stage.value, "progress": progress}
            if stage is JobStage.OUTPUT_CONTROL:
                values["status"] = JobStatus.CHECKING.value
            result = session.execute(update(Job).where(*self._ours(claimed)).values(**values).returning(Job.id)).first()
            if result is not None and stage is JobStage.OUTPUT_CONTROL:
                job = session.get(Job, claimed.job_id)
                assert job is not None
                self.ledger.append(
                    session,
                    actor=f"worker:{self.worker_id}",
                    action="job.checking",
                    object_type="job",
                    object_id=job.id,
                    details=transition_details(job),
                )
        return result is not None

    def finish(self, claimed: Claimed, outcome: Outcome, output: JobOutput | None) -> bool:
        """End the job with its outcome and sealed output, in one transaction; False (and no change) if the lease is no longer ours.

        The outcome's verdict becomes the stored JSON here (``Verdict.as_json``). A DP job is charged to
        the privacy budget here, in the same transaction, whatever its status (a failure is an answer
        too; a held one is charged at review); if the budget no longer covers a release, the job fails
        with no output stored and nothing spent. Likewise a released score job records its
        ``scored`` entities' uses here (``he_score.record_uses``). The job's ``released_cells`` are
        counted here (a blocked job's too), and a release that would pass the grant's cap on released cells fails with
        ``CAP_REACHED`` (``release_cap.admit``, before the charge: a DP job it stops is charged as a
        failure). An outcome with populations is audited here against every release of its dataset
        versions (``audited.on_finish``, under each version's lock): failing cells are withheld, or the
        job held, and the output sealed again accordingly.
        """
        status, reason, scored = outcome.status, outcome.reason, outcome.scored
        verdict = outcome.verdict.as_json() if outcome.verdict is not None else None
        with self.db.writing() as session:
            job = session.scalar(select(Job).where(*self._ours(claimed)).with_for_update())
            if job is None:
                return False
            if job.cancel_requested and status is not JobStatus.FAILED:
                status, reason, verdict = JobStatus.CANCELLED, "cancelled by the analyst", None
            job.verdict = verdict  # before charging: the verdict says whether the answer spent δ
            job.released_cells = _cells(outcome)
            capped: dict[str, Any] = {}
            if status is JobStatus.RELEASED:
                admission = release_cap.admit(session, job)
                capped = admission.details
                if not admission.fits:
                    status, reason, verdict, output = JobStatus.FAILED, CAP_REACHED, None, None
                    job.verdict = None
            if status is JobStatus.RELEASED:
                if not budget.charge(session, self.ledger, job, f"worker:{self.worker_id}"):
                    # Another release spent what this one needed after the pre-check: nothing leaves.
                    status, reason, verdict, output = JobStatus.FAILED, EXHAUSTED, None, None
                    job.verdict = None
            elif status is not JobStatus.HELD:  # failed, timed out, cancelled, blocked: it read the data (a held one is charged at review)
                budget.charge(session, self.ledger, job, f"worker:{self.worker_id}", ended=status)
            if status is JobStatus.RELEASED and scored:
                refused = he_score.record_uses(session, self.ledger, job, scored, f"worker:{self.worker_id}")
                if refused is not None:  # a consent revoked or a quota used up meanwhile: nothing leaves
                    status, reason, verdict, output = JobStatus.FAILED, refused, None, None
                    job.verdict = None
            if status in (JobStatus.RELEASED, JobStatus.HELD) and outcome.populations and outcome.released is not None:
                status, reason, verdict, output = self._audit(session, job, outcome, status, reason, verdict, output)
            if output is not None:
                session.add(output)
            self._end(session, job, status, reason, outcome.cause, **capped)
        return True

    def _audit(
        self,
        session: Session,
        job: Job,
        outcome: Outcome,
        status: JobStatus,
        reason: str,
        verdict: dict[str, Any] | None,
        output: JobOutput | None,
    ) -> tuple[JobStatus, str, dict[str, Any] | None, JobOutput | None]:
        """The release audit of a finishing job; an amended form is sealed again in place of ``output``."""
        if self.keys is None:
            raise InternalError("a queue that finishes jobs with populations needs the key store")
        assert outcome.released is not None
        done = audited.on_finish(session, self.keys, job, outcome.populations, status, reason, outcome.released)
        if done.released is not None and outcome.raw is not None:
            output = outputs.seal(self.keys, job.id, outcome.raw, done.released)
            job.verdict = verdict = recounted(verdict, done)
        return done.status, done.reason, verdict, output

    def _ours(self, claimed: Claimed) -> tuple[Any, ...]:
        return (Job.id == claimed.job_id, Job.lease_owner == self.worker_id, Job.attempts == claimed.attempt, Job.status.in_(ACTIVE))

    def _end(
        self, session: Session, job: Job, status: JobStatus, reason: str, cause: str = "", spent: bool = False, **recorded: Any
    ) -> None:
        """End ``job``; ``spent``: it read the data, so a DP job spends its ε (before the ledger append: lock order)."""
        if spent:
            budget.charge(session, self.ledger, job, f"worker:{self.worker_id}", ended=status)
        job.status, job.reason = status.value, reason or None
        job.stage, job.finished_at = JobStage.DONE.value, _now()
        job.progress = 1.0
        job.lease_owner, job.lease_expires_at = None, None
        extra: dict[str, Any] = {**recorded, "reason": reason} if reason else dict(recorded)
        if cause:
            extra["cause"] = cause
        if job.verdict:
            extra["verdict"] = job.verdict
        self.ledger.append(
            session,
            actor=f"worker:{self.worker_id}",
            action=f"job.{status.value}",
            object_type="job",
            object_id=job.id,
            details=transition_details(job, **extra),
        )


def recounted(verdict: dict[str, Any] | None, done: audited.Audited) -> dict[str, Any] | None:
    """The stored verdict after the release audit amended the form: its counts, and its status when it changed."""
    if verdict is None or done.released is None:
        return verdict
    summary = done.released["summary"]
    status = {JobStatus.BLOCKED: "block", JobStatus.HELD: "review"}.get(done.status, verdict.get("status"))
    return {**verdict, "status": status, "suppressed": summary["suppressed"], "flagged": summary["flagged"]}


def _cells(outcome: Outcome) -> int | None:
    """The cells the outcome gives out (``jobs.released.cell_count``); a job blocked without a form gives one: that it was blocked."""
    if outcome.released is not None:
        return cell_count(outcome.released)
    return 1 if outcome.status is JobStatus.BLOCKED else None
