"""The review queue: auditors see held outputs (raw beside proposed) and release or reject them, with a reason.

Every view and decision is on the ledger. The analyst sees only the decision and its reason. A script
job's review is blinded (``sandbox.service.blind_review``): its reviewers decide independently, the
ledger holds a commitment to each decision until all have decided, and the job's outcome comes from
all the decisions at once. A script job's reviewer may release some of its outputs (``outputs``) and
return the others: what is released is what every reviewer released.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BadRequest, Conflict, Forbidden
from core.values import JobKind, JobStatus, Role
from jobs.released import cell_count, rows_of
from policies.model import Policy
from sandbox.api.jobs import job_out
from sandbox.api.routing import endpoint
from sandbox.api.schemas import JobOut, ReviewDecision, ReviewIn, ReviewItem, ReviewList
from sandbox.api.services import ledger
from sandbox.db import writing
from sandbox.keys import get_keys
from sandbox.models import GrantPolicy, Job, JobOutput, Review, User, new_id
from sandbox.runtime import audited, he_score, outputs, release_audit
from sandbox.runtime.queue import EXHAUSTED, recounted
from sandbox.service import blind_review, budget, release_cap
from sandbox.service import jobs as job_service
from sandbox.service.auth import Principal
from sandbox.service.release_cap import CAP_REACHED

AUDITOR = frozenset({Role.AUDITOR})
SCRIPT_REVIEWERS = 2


def reviewers_required(session: Session, job: Job) -> int:
    pinned = session.scalars(
        select(GrantPolicy).where(GrantPolicy.grant_id == job.grant_id, GrantPolicy.version == job.policy_version)
    ).one()
    reviewers = Policy.model_validate(pinned.policy).reviewers
    # A script can transform the data before any check sees it: its outputs need two independent reviewers at least.
    return max(reviewers, SCRIPT_REVIEWERS) if job.kind == JobKind.SCRIPT.value else reviewers


def _audit(session: Session, job: Job) -> audited.Audited | None:
    """The release audit of a held job being released, in this transaction; its output sealed again if cells are withheld."""
    output = session.get(JobOutput, job.id)
    if output is None:
        return None
    done = audited.on_review(session, get_keys(), job, outputs.open_released(get_keys(), output))
    if done.released is not None:
        _reseal(output, done.released)
        job.verdict = recounted(job.verdict, done)
    return done


def held_for(session: Session, caller: Principal) -> list[Job]:
    """The held jobs the auditor may review (those with an output), newest first: the queue of ``GET /reviews``."""
    held = job_service.list_visible(session, caller, status=JobStatus.HELD, limit=None)
    return [job for job in held if session.get(JobOutput, job.id) is not None]


def held_job(session: Session, caller: Principal, job_id: str) -> Job:
    """One job of the auditor's queue; 404 for a job they may not see, 409 for one that no longer awaits review."""
    job = job_service.visible(session, caller, job_id)
    if job.status != JobStatus.HELD.value or session.get(JobOutput, job.id) is None:
        raise Conflict(f"the job is {job.status}; only a held output can be reviewed", details={"status": job.status})
    return job


def review_item(session: Session, caller: Principal, job: Job) -> ReviewItem:
    """A held job as its reviewers see it: raw beside proposed, the audit's findings, the reviews so far. Its viewing is on the ledger.

    The reviews so far show who decided and when; what they decided shows only for a job of another kind
    than script, whose review is blinded until complete (``blind_review``), as it is on the ledger.
    """
    output = session.get(JobOutput, job.id)
    assert output is not None, "held_for and held_job keep only jobs with an output"
    raw = outputs.open_raw(get_keys(), output)
    blinded = job.kind == JobKind.SCRIPT.value
    decisions = decisions_of(session, job)
    details = {"status": job.status}
    ledger().append(session, actor=caller.user_id, action="review.view", object_type="job", object_id=job.id, details=details)
    return ReviewItem(
        job=job_out(job),
        raw={"columns": raw.column_names, "rows": rows_of(raw)},
        proposed=outputs.open_released(get_keys(), output),
        findings=release_audit.findings(session, job.id),
        reviewers_required=reviewers_required(session, job),
        blinded=blinded,
        decisions=decisions,
    )


def decisions_of(session: Session, job: Job) -> list[ReviewDecision]:
    """The decisions made so far on a held job, oldest first; blinded for a script job (who and when only)."""
    blinded = job.kind == JobKind.SCRIPT.value
    reviews = session.scalars(select(Review).where(Review.job_id == job.id).order_by(Review.created_at, Review.id))
    return [
        ReviewDecision(
            reviewer=r.reviewer,
            reviewer_name=_name_of(session, r.reviewer),
            decided_at=r.created_at,
            decision=None if blinded else r.decision,
            reason=None if blinded else r.reason,
            outputs=None if blinded else r.outputs,
        )
        for r in reviews
    ]


def _name_of(session: Session, user_id: str) -> str:
    user = session.get(User, user_id)
    return user.name if user is not None else ""


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/reviews",
        "GET",
        summary="Held outputs: the raw output beside the proposed release",
        roles=AUDITOR,
        response=ReviewList,
        errors=(401, 403),
    )
    def list_reviews(caller: Principal) -> ReviewList:
        with writing() as session:
            return ReviewList(items=[review_item(session, caller, job) for job in held_for(session, caller)])

    @endpoint(
        bp,
        "/reviews/<job_id>",
        "POST",
        summary="Release or reject a held output, with a written reason",
        roles=AUDITOR,
        body=ReviewIn,
        response=JobOut,
        errors=(400, 401, 403, 404, 409),
    )
    def decide(caller: Principal, job_id: str, body: ReviewIn) -> JobOut:
        return decide_review(caller, job_id, body)


def decide_review(caller: Principal, job_id: str, body: ReviewIn) -> JobOut:
    """One auditor's decision on a held output, in its own transaction: the API's ``POST /reviews/{id}`` and the console's form."""
    with writing() as session:
        job = _held_job(session, caller, job_id)
        earlier = list(session.scalars(select(Review).where(Review.job_id == job.id)))
        if any(r.reviewer == caller.user_id for r in earlier):
            raise Conflict("you have reviewed this output already; a second auditor must decide", details={"field": "reviewer"})
        chosen = _chosen(session, job, body)
        review = Review(id=new_id(), job_id=job.id, reviewer=caller.user_id, decision=body.decision, reason=body.reason, outputs=chosen)
        session.add(review)
        needed = reviewers_required(session, job)
        if job.kind == JobKind.SCRIPT.value:  # blinded: the job's outcome waits for every required reviewer
            pending, decided = len(earlier) + 1 < needed, None
            if not pending:
                decided = blind_review.outcome([*earlier, review], _proposed(session, job))
            decision, reason = (decided.decision, decided.reason) if decided is not None else (body.decision, body.reason)
            releases_ = len(earlier) + 1
        else:
            releases_ = 1 + sum(1 for r in earlier if r.decision == "release")
            pending = body.decision == "release" and releases_ < needed
            decision, reason, decided = body.decision, body.reason, None
        # Cap and charge before any ledger append: the worker's finish locks grant and dataset before the ledger head too.
        final_release = decision == "release" and not pending
        if final_release and decided is not None:
            _narrow(session, job, decided.kept)
        admission = release_cap.admit(session, job) if final_release else None
        capped = admission is not None and not admission.fits
        affordable = not final_release or (not capped and budget.charge(session, ledger(), job, caller.user_id))
        if (decision == "reject" and not pending) or capped:  # a rejection or a capped release is an answer too: a DP job spends its ε
            ended = JobStatus.REJECTED if decision == "reject" else JobStatus.FAILED
            budget.charge(session, ledger(), job, caller.user_id, ended=ended)
        refused = None if affordable else CAP_REACHED if capped else EXHAUSTED
        if refused is None and final_release:
            refused = he_score.record_released(session, ledger(), job, get_keys(), caller.user_id)
        # Audited now, against everything released by now, under the version's lock (before any ledger append).
        done = _audit(session, job) if refused is None and final_release else None
        _record(session, caller, job, review, releases_, needed, decided)
        if not pending:
            _close(session, caller, job, (decision, reason), refused, done, admission.details if admission is not None else {})
        return job_out(job)


def _record(
    session: Session, caller: Principal, job: Job, review: Review, decided: int, needed: int, done: blind_review.Outcome | None
) -> None:
    """The decision on the ledger: in full for a job of another kind; for a script job, a commitment only, until its review is complete."""
    if job.kind != JobKind.SCRIPT.value:
        details = job_service.transition_details(job, decision=review.decision, reason=review.reason, releases=decided, required=needed)
        ledger().append(
            session, actor=caller.user_id, action=f"review.{review.decision}", object_type="job", object_id=job.id, details=details
        )
        return
    details = job_service.transition_details(job, commitment=blind_review.commitment(review), decided=decided, required=needed)
    ledger().append(session, actor=caller.user_id, action="review.submitted", object_type="job", object_id=job.id, details=details)
    if done is not None:
        reviews = session.scalars(select(Review).where(Review.job_id == job.id).order_by(Review.created_at, Review.id))
        opened = job_service.transition_details(
            job, decisions=[blind_review.opened(r) for r in reviews], decision=done.decision, outputs=sorted(done.kept)
        )
        ledger().append(session, actor=caller.user_id, action="review.opened", object_type="job", object_id=job.id, details=opened)


def _proposed(session: Session, job: Job) -> list[str]:
    """The outputs a script job's run proposed for release (none when it failed)."""
    output = session.get(JobOutput, job.id)
    return sorted(outputs.open_released(get_keys(), output).get("outputs", {})) if output is not None else []


def _reseal(output: JobOutput, released: dict[str, Any]) -> None:
    """Seal ``output`` again, in place, with a new released form (the raw table unchanged)."""
    sealed = outputs.seal(get_keys(), output.job_id, outputs.open_raw(get_keys(), output), released)
    output.raw, output.released = sealed.raw, sealed.released
    output.wrapped_key, output.master_key_id = sealed.wrapped_key, sealed.master_key_id


def _chosen(session: Session, job: Job, body: ReviewIn) -> list[str] | None:
    """The outputs a reviewer releases (None: all): only a script job's, only with a release, only names it proposed."""
    if body.outputs is None:
        return None
    if job.kind != JobKind.SCRIPT.value or body.decision != "release":
        raise BadRequest("outputs names the outputs a script job's release covers", details={"field": "outputs"})
    output = session.get(JobOutput, job.id)
    proposed = outputs.open_released(get_keys(), output).get("outputs", {}) if output is not None else {}
    unknown = sorted(set(body.outputs) - set(proposed))
    if unknown:
        raise BadRequest(f"not an output proposed for release: {', '.join(unknown)}", details={"field": "outputs"})
    return sorted(set(body.outputs))


def _narrow(session: Session, job: Job, kept: frozenset[str]) -> None:
    """At a script job's final release: keep the outputs every releasing reviewer released (``kept``), return the rest (sealed again)."""
    output = session.get(JobOutput, job.id)
    if output is None:
        return
    released = outputs.open_released(get_keys(), output)
    proposed = released.get("outputs", {})
    if kept >= set(proposed):
        return
    narrowed = {
        **released,
        "outputs": {name: value for name, value in proposed.items() if name in kept},
        "returned": sorted(set(proposed) - kept),
        "summary": {**released["summary"], "outputs": len(kept)},
    }
    _reseal(output, narrowed)
    job.released_cells = cell_count(narrowed)


def _held_job(session: Session, caller: Principal, job_id: str) -> Job:
    """The held job, locked and read afresh: two auditors deciding at once must not both see it held."""
    visible = job_service.visible(session, caller, job_id)
    if visible.org_id == caller.org_id:
        raise Forbidden("nobody reviews a job of their own organisation")
    job = session.scalar(select(Job).where(Job.id == visible.id).with_for_update().execution_options(populate_existing=True))
    assert job is not None
    if job.status != JobStatus.HELD.value:
        raise Conflict(f"the job is {job.status}; only a held output can be reviewed", details={"status": job.status})
    return job


def _close(
    session: Session,
    caller: Principal,
    job: Job,
    decided: tuple[str, str],
    refused: str | None,
    done: audited.Audited | None,
    capped: dict[str, Any],
) -> None:
    """The final decision: released (unless the budget or a score's consents no longer allow it: ``refused``), rejected, or failed.

    A release the audit left nothing of (``done``) is blocked; one it withheld cells of is released without them.
    """
    decision, reason = decided  # (decision, reason): the reviewer's, or a script job's complete review's (``blind_review``)
    status = JobStatus.RELEASED if decision == "release" else JobStatus.REJECTED
    if status is JobStatus.RELEASED and refused is not None:
        status, reason = JobStatus.FAILED, refused  # nothing is released
    elif status is JobStatus.RELEASED and done is not None and done.status is JobStatus.BLOCKED:
        status, reason = JobStatus.BLOCKED, done.reason
    job.status, job.reason, job.finished_at = status.value, reason, datetime.now(UTC)
    details = job_service.transition_details(job, **capped)
    ledger().append(session, actor=caller.user_id, action=f"job.{status.value}", object_type="job", object_id=job.id, details=details)
