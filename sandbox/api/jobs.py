"""Jobs: submit (after the policy pre-check), follow, cancel, read the released result, dry-run on mock data."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app

from core.errors import Conflict, NotFound
from core.values import JobKind, JobStatus, Role
from sandbox.api import analyst_view as view
from sandbox.api.routing import endpoint
from sandbox.api.schemas import DryRunIn, DryRunOut, JobCreated, JobIn, JobList, JobOut, JobsQuery, ResultOut
from sandbox.api.services import ledger
from sandbox.db import read_session, writing
from sandbox.keys import get_keys
from sandbox.models import Grant, Job, JobOutput, Review
from sandbox.runtime import outputs
from sandbox.runtime.dry_run import DryRunLimits
from sandbox.runtime.dry_run import dry_run as run_dry
from sandbox.service import jobs as job_service
from sandbox.service.auth import Principal
from sandbox.service.grants import get_visible

ANALYST = frozenset({Role.ANALYST})
PARTIES = frozenset({Role.ANALYST, Role.STEWARD, Role.AUDITOR})


def job_out(job: Job, caller: Principal | None = None) -> JobOut:
    """A job as the caller may see it: an analyst through ``analyst_view``, stewards and auditors as stored."""
    queued = (job.started_at - job.created_at).total_seconds() if job.started_at else None
    ran = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    status = JobStatus(job.status)
    if caller is not None and caller.role is Role.ANALYST:
        if job.kind == JobKind.SCRIPT.value:  # how long a script ran can depend on the data: its analyst sees no timing
            shown = view.script_state(status, job.stage, job.progress, job.started_at, job.timeout_seconds)
            return JobOut(
                id=job.id, grant_id=job.grant_id, kind=job.kind, spec=job.spec, spec_sha256=job.spec_sha256,
                status=shown.status, stage=shown.stage, progress=shown.progress, attempts=job.attempts,
                reason=None if shown.masked else view.reason(status, job.reason),
                verdict=None if shown.masked else view.verdict(job.verdict), policy_version=job.policy_version,
                dataset_versions=job.dataset_versions, created_at=view.whole_seconds(job.created_at),
                started_at=None, finished_at=None, queued_seconds=None, run_seconds=None,
            )  # fmt: skip
        return JobOut(
            id=job.id, grant_id=job.grant_id, kind=job.kind, spec=job.spec, spec_sha256=job.spec_sha256,
            status=job.status, stage=job.stage, progress=job.progress, attempts=job.attempts,
            reason=view.reason(status, job.reason), verdict=view.verdict(job.verdict), policy_version=job.policy_version,
            dataset_versions=job.dataset_versions, created_at=view.whole_seconds(job.created_at),
            started_at=view.whole_seconds(job.started_at), finished_at=view.whole_seconds(job.finished_at),
            queued_seconds=view.duration(queued), run_seconds=view.duration(ran),
        )  # fmt: skip
    return JobOut(
        id=job.id, grant_id=job.grant_id, kind=job.kind, spec=job.spec, spec_sha256=job.spec_sha256,
        status=job.status, stage=job.stage, progress=job.progress, attempts=job.attempts, reason=job.reason,
        verdict=job.verdict, policy_version=job.policy_version, dataset_versions=job.dataset_versions,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        queued_seconds=queued, run_seconds=ran,
    )  # fmt: skip


LIST_BATCH = 200  # jobs read at a time while an analyst's status filter is applied to what they see


def _shown_with_status(caller: Principal, status: JobStatus, limit: int, before: datetime | None) -> list[tuple[datetime, JobOut]]:
    """An analyst's jobs whose status *as shown* is ``status``, newest first, with their ``created_at`` for paging.

    A script job shows ``running`` until its time limit has passed (``analyst_view``): filtered on the
    stored status, ``?status=held`` would list it the moment the script ended, and tell when.
    """
    session, found = read_session(), list[tuple[datetime, JobOut]]()
    while len(found) < limit:
        batch = job_service.list_visible(session, caller, limit=LIST_BATCH, before=before)
        found += [(job.created_at, out) for job in batch if (out := job_out(job, caller)).status == status.value]
        if len(batch) < LIST_BATCH:
            break
        before = batch[-1].created_at
    return found[:limit]


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/jobs",
        "POST",
        summary="Submit a job; the policy pre-check answers 422 before anything is queued",
        roles=ANALYST,
        body=JobIn,
        response=JobCreated,
        status=202,
        errors=(400, 401, 403, 404, 422, 429),
    )
    def submit(caller: Principal, body: JobIn) -> JobCreated:
        return submitted(caller, body)

    @endpoint(
        bp, "/jobs", "GET", summary="Jobs visible to the caller, newest first, a page at a time", roles=PARTIES,
        query=JobsQuery, response=JobList, errors=(400, 401, 403),
    )  # fmt: skip
    def list_jobs(caller: Principal, query: JobsQuery) -> JobList:
        if caller.role is Role.ANALYST and query.status is not None:
            shown = _shown_with_status(caller, query.status, query.limit, query.before)
        else:
            jobs = job_service.list_visible(read_session(), caller, status=query.status, limit=query.limit, before=query.before)
            shown = [(j.created_at, job_out(j, caller)) for j in jobs]
        next_before = shown[-1][0] if len(shown) == query.limit else None
        return JobList(items=[out for _, out in shown], next_before=next_before)

    @endpoint(
        bp,
        "/jobs/<job_id>",
        "GET",
        summary="Status, stage, progress, timings and verdict summary",
        roles=PARTIES,
        response=JobOut,
        errors=(401, 403, 404),
    )
    def get_job(caller: Principal, job_id: str) -> JobOut:
        return job_out(job_service.visible(read_session(), caller, job_id), caller)

    @endpoint(
        bp,
        "/jobs/<job_id>/result",
        "GET",
        summary="The released output with per-cell notes; 409 until released",
        roles=ANALYST,
        response=ResultOut,
        errors=(401, 403, 404, 409),
    )
    def result(caller: Principal, job_id: str) -> ResultOut:
        return result_out(caller, job_id)

    @endpoint(
        bp,
        "/jobs/<job_id>/cancel",
        "POST",
        summary="Cancel a queued or running job",
        roles=ANALYST,
        response=JobOut,
        errors=(401, 403, 404, 409),
    )
    def cancel(caller: Principal, job_id: str) -> JobOut:
        with writing() as session:
            return job_out(job_service.cancel(session, ledger(), caller, job_id), caller)

    @endpoint(
        bp,
        "/jobs/dry-run",
        "POST",
        summary="Run a job on mock data only, in a child process under the dry-run limits; charges nothing",
        roles=ANALYST,
        body=DryRunIn,
        response=DryRunOut,
        errors=(400, 401, 403, 404, 413, 422),
    )
    def dry_run(caller: Principal, body: DryRunIn) -> DryRunOut:
        return dry_run_out(caller, body)


# The work of the endpoints below, as functions: the console calls the same ones, so that a page shows,
# submits and refuses exactly what the API does for the same person.


def submitted(caller: Principal, body: JobIn) -> JobCreated:
    """``POST /jobs``: the policy pre-check, then the job queued (a refusal is on the ledger and raised)."""
    config = current_app.config
    with writing() as session:
        job = job_service.submit(
            session,
            ledger(),
            caller,
            body.grant_id,
            body.kind,
            body.spec,
            int(config["JOB_TIMEOUT_SECONDS"]),
            int(config["JOB_MAX_ATTEMPTS"]),
            int(config["CATALOGUE_COUNT_BASE"]),
        )
        return JobCreated(id=job.id, status=job.status)


def prechecked(caller: Principal, body: JobIn) -> job_service.Checked:
    """The policy pre-check that submission and the dry run start with, recording nothing (the console validates with it).

    Raises what they raise for the grant and the spec (404, 403, 400, 422); the budget is checked at
    submission only, where it is spent.
    """
    return _checked(get_visible(read_session(), caller, body.grant_id), body)


def _checked(grant: Grant, body: JobIn) -> job_service.Checked:
    return job_service.check(grant, body.kind, body.spec, int(current_app.config["CATALOGUE_COUNT_BASE"]))


def dry_run_out(caller: Principal, body: DryRunIn) -> DryRunOut:
    """``POST /jobs/dry-run``: the checked job run on mock rows in a child process; charges and records nothing."""
    grant = get_visible(read_session(), caller, body.grant_id)
    checked = _checked(grant, body)
    schemas, versions = job_service.schemas_of(grant)
    config = current_app.config
    limits = DryRunLimits(int(config["DRY_RUN_TIMEOUT_SECONDS"]), int(config["DRY_RUN_MEMORY_BYTES"]), int(config["DRY_RUN_MAX_CELLS"]))
    released = run_dry(caller.org_id, body.kind, checked, schemas, versions, (body.rows, body.seed), limits)
    return DryRunOut(synthetic=True, note="computed on synthetic mock rows, not on the data", **released)


def result_out(caller: Principal, job_id: str) -> ResultOut:
    """``GET /jobs/{id}/result``: the caller's released output through the analyst's view; 409 until released."""
    session = read_session()
    job = job_service.owned(session, caller, job_id)
    status = JobStatus(job.status)
    if job.kind == JobKind.SCRIPT.value and view.script_state(status, job.stage, job.progress, job.started_at, job.timeout_seconds).masked:
        status = JobStatus.RUNNING  # a script job shows running until its time limit has passed (``analyst_view``)
    if status is not JobStatus.RELEASED:
        raise Conflict(
            f"the job is {status.value}; only a released result can be read",
            details={"status": status.value, "reason": view.reason(status, job.reason)},
        )
    output = session.get(JobOutput, job.id)
    if output is None:
        raise NotFound("the job has no output")
    released = outputs.open_released(get_keys(), output)
    review = session.query(Review).filter_by(job_id=job.id).order_by(Review.created_at.desc()).first()
    decision = {"decision": review.decision, "reason": review.reason} if review else None
    if review is not None and job.kind == JobKind.SCRIPT.value:  # a blinded review's reasons, all of them (``blind_review``)
        decision = {"decision": "release", "reason": job.reason or ""}
    return ResultOut(job_id=job.id, decision=decision, **view.released(released))
