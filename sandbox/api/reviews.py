"""The review queue: auditors see held outputs (raw beside proposed) and release or reject them, with a reason.

Every view and decision is on the ledger. The analyst sees only the decision and its reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint
from sqlalchemy import select

from core.errors import Conflict, Forbidden
from core.values import JobStatus, Role
from sandbox import job_service, outputs
from sandbox.api.jobs import job_out
from sandbox.api.routing import endpoint
from sandbox.api.schemas import JobOut, ReviewIn, ReviewItem, ReviewList
from sandbox.api.services import ledger
from sandbox.auth import Principal
from sandbox.db import writing
from sandbox.keys import get_keys
from sandbox.models import Job, JobOutput, Review

AUDITOR = frozenset({Role.AUDITOR})


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
            held = [j for j in job_service.list_visible(session, caller) if j.status == JobStatus.HELD.value]
            items = []
            for job in held:
                output = session.get(JobOutput, job.id)
                if output is None:
                    continue
                raw = outputs.open_raw(get_keys(), output)
                items.append(
                    ReviewItem(
                        job=job_out(job),
                        raw={"columns": raw.column_names, "rows": outputs.rows_of(raw)},
                        proposed=outputs.open_released(get_keys(), output),
                    )
                )
                ledger().append(
                    session, actor=caller.user_id, action="review.view", object_type="job", object_id=job.id, details={"status": job.status}
                )
            return ReviewList(items=items)

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
        with writing() as session:
            job = job_service.visible(session, caller, job_id)
            if job.org_id == caller.org_id:
                raise Forbidden("nobody reviews a job of their own organisation")
            if job.status != JobStatus.HELD.value:
                raise Conflict(f"the job is {job.status}; only a held output can be reviewed")
            job = session.scalar(select(Job).where(Job.id == job.id).with_for_update())
            assert job is not None
            status = JobStatus.RELEASED if body.decision == "release" else JobStatus.REJECTED
            session.add(Review(job_id=job.id, reviewer=caller.user_id, decision=body.decision, reason=body.reason))
            job.status, job.reason, job.finished_at = status.value, body.reason, datetime.now(UTC)
            details = job_service.transition_details(job, decision=body.decision, reason=body.reason)
            ledger().append(
                session, actor=caller.user_id, action=f"review.{body.decision}", object_type="job", object_id=job.id, details=details
            )
            return job_out(job)
