"""Submitting, listing, cancelling jobs and reading their results: the analyst's side of the queue.

The policy pre-check runs at submission: a job the grant's policy refuses is answered 422 and
never queued (the refusal is on the ledger). Datasets are pinned to their current versions and the
policy to its current version, so that a job runs on exactly what it was checked against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BadRequest, BudgetExhausted, Conflict, InternalError, NotFound, PolicyViolation, TooExpensive, ValidationFailed
from core.schema import DatasetSchema
from core.values import JobKind, JobStage, JobStatus, Role
from crypto import ledger as ledger_crypto
from jobs import cost
from jobs import he as he_jobs
from jobs.he import HEPlan
from jobs.query import QueryPlan
from jobs.query import validate as validate_query
from jobs.query.dp import plan_dp
from jobs.script import ScriptPlan, ScriptSpec, ScriptsUnavailable
from jobs.script import plan as plan_script
from jobs.stats import StatsPlan
from jobs.stats import plan as plan_stats
from jobs.stats.dp import DPStats
from jobs.stats.dp import plan_dp as plan_dp_stats
from policies.budget import Delta, selection_delta
from policies.model import Policy
from sandbox.models import Grant, Job
from sandbox.scripts import isolation
from sandbox.service import budget
from sandbox.service.auth import Principal
from sandbox.service.datasets import catalogue_count
from sandbox.service.grants import active_policy, get_visible
from sandbox.service.ledger import Ledger
from sandbox.service.validation import parse_model

MAX_TIMEOUT = 3_600


class QuerySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: Annotated[str, Field(min_length=1, max_length=20_000)]
    # The ε the analyst spends on this job: required when the grant's policy has dp, refused otherwise. No default.
    epsilon: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class StatsTerms(BaseModel):
    """What a stats spec states besides its op: the ε it spends, as in ``QuerySpec``."""

    model_config = ConfigDict(extra="forbid")

    epsilon: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class Timeout(BaseModel):
    timeout_seconds: Annotated[int, Field(ge=1, le=MAX_TIMEOUT)]


Plan = QueryPlan | StatsPlan | DPStats | HEPlan | ScriptPlan  # DPStats: a stats job on a DP grant


@dataclass(frozen=True)
class Checked:
    spec: dict[str, Any]  # the normalised spec that is stored and run
    timeout: int | None
    policy: Policy
    policy_version: int
    plan: Plan

    @property
    def datasets(self) -> tuple[str, ...]:
        return self.plan.datasets if isinstance(self.plan, QueryPlan | HEPlan | ScriptPlan) else (self.plan.dataset,)


def schemas_of(grant: Grant) -> tuple[dict[str, DatasetSchema], dict[str, dict[str, Any]]]:
    """Current schemas by dataset name, and the versions they pin."""
    schemas, versions = {}, {}
    for link in grant.datasets:
        current = link.dataset.current
        schemas[link.dataset.name] = DatasetSchema.model_validate(current.schema)
        versions[link.dataset.name] = {"version_id": current.id, "number": current.number}
    return schemas, versions


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 of the canonical spec; a spec that is not plain JSON (NaN, infinities, lone surrogates) is bad input."""
    try:
        return hashlib.sha256(ledger_crypto.canonical(spec)).hexdigest()
    except (InternalError, UnicodeEncodeError):
        raise ValidationFailed(
            "the spec holds values that are not plain JSON (NaN, infinity or invalid text)", details={"field": "spec"}
        ) from None


def _stated_epsilon(policy: Policy, epsilon: float | None) -> None:
    """A DP grant's jobs state their ε; other grants' jobs state none (400 either way)."""
    if policy.dp is None and epsilon is not None:
        raise BadRequest("the grant's policy has no differential privacy: a job states no epsilon", details={"field": "epsilon"})
    if policy.dp is not None and epsilon is None:
        raise BadRequest("the grant's policy uses differential privacy: state the job's epsilon", details={"field": "epsilon"})


def plan_query(spec: QuerySpec, policy: Policy, schemas: dict[str, DatasetSchema], unique_units: frozenset[str] = frozenset()) -> QueryPlan:
    _stated_epsilon(policy, spec.epsilon)
    plan = validate_query(spec.sql, policy, schemas, unique_units, top_n=max(policy.disclosure.nk_n, 2))
    if policy.dp is None:
        return plan
    selection = policy.dp.delta_total > 0
    dp_plan = plan_dp(plan, schemas, policy.dp.max_rows_per_unit, unique_units, key_selection=selection)  # refuses shapes without a DP form
    return replace(plan, dp=dp_plan)


def plan_stats_job(
    spec: dict[str, Any], policy: Policy, schemas: dict[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> StatsPlan | DPStats:
    """A stats spec with its ``epsilon`` taken out: the plain plan, or on a DP grant its DP form."""
    terms = parse_model(StatsTerms, {"epsilon": spec["epsilon"]} if "epsilon" in spec else {}, "spec")
    _stated_epsilon(policy, terms.epsilon)
    rest = {key: value for key, value in spec.items() if key != "epsilon"}
    if policy.dp is None:
        return plan_stats(rest, policy, schemas, unique_units)
    selection = policy.dp.delta_total > 0
    return plan_dp_stats(rest, policy, schemas, policy.dp.max_rows_per_unit, unique_units, key_selection=selection)


def plan_job(
    kind: JobKind, spec: dict[str, Any], policy: Policy, schemas: dict[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> Plan:
    """Validate a stored or submitted spec of ``kind`` against the policy: the plan, or PolicyViolation."""
    if kind is JobKind.QUERY:
        return plan_query(parse_model(QuerySpec, spec, "spec"), policy, schemas, unique_units)
    if kind is JobKind.STATS:
        return plan_stats_job(spec, policy, schemas, unique_units)
    if kind is JobKind.HE:
        if policy.dp is not None:
            raise PolicyViolation(
                "he jobs have no differentially private form; this grant answers query and stats jobs", details={"rule": "dp_unsupported"}
            )
        return he_jobs.plan(spec, policy, schemas, unique_units)
    if kind is JobKind.SCRIPT:
        return plan_script(parse_model(ScriptSpec, spec, "spec"), policy, schemas)
    raise InternalError(f"no planner for {kind.value} jobs")


def check(grant: Grant, kind: JobKind, raw_spec: dict[str, Any], count_base: int) -> Checked:
    """The policy pre-check: the grant allows the kind now, the spec is well formed, the job obeys the policy,
    and its estimated size is within the policy's cost limits (``TooExpensive`` otherwise)."""
    policy, version = active_policy(grant, kind)
    if kind is JobKind.SCRIPT and (why := isolation.unavailable()):
        raise ScriptsUnavailable(why, details={"field": "kind"})  # never run unisolated
    spec = dict(raw_spec)
    timeout = (
        parse_model(Timeout, {"timeout_seconds": spec.pop("timeout_seconds")}, "spec").timeout_seconds
        if "timeout_seconds" in spec
        else None
    )
    schemas, _ = schemas_of(grant)
    # Only he plans depend on one row per unit at submission (a score needs it); query and stats plans
    # use it at run time for cheaper SQL, and dry runs run on mock rows, in which units may repeat.
    unique = unique_units(grant) if kind is JobKind.HE else frozenset()
    plan = plan_job(kind, spec, policy, schemas, unique)
    rows = {link.dataset.name: public_rows(link.dataset.current.row_count, count_base) for link in grant.datasets}
    cost.check(cost.estimate(plan, schemas, rows, cost.declared_levels, policy.disclosure.secondary_suppression), policy.limits)
    return Checked(spec, timeout, policy, version, plan)


def public_rows(count: int, base: int) -> int:
    """A bound on a dataset's rows from what the catalogue shows analysts (``catalogue_count``) alone, so
    that a cost estimate, which a refusal names, tells no more than the catalogue."""
    return catalogue_count(count, base) + base // 2


def unique_units(grant: Grant) -> frozenset[str]:
    """The grant's datasets whose current version has one row per privacy unit."""
    return frozenset(link.dataset.name for link in grant.datasets if link.dataset.current.unit_count == link.dataset.current.row_count)


def submit(
    session: Session,
    ledger: Ledger,
    caller: Principal,
    grant_id: str,
    kind: JobKind,
    raw_spec: dict[str, Any],
    default_timeout: int,
    max_attempts: int,
    count_base: int,
) -> Job:
    grant = get_visible(session, caller, grant_id)
    digest = spec_hash(raw_spec)
    try:
        checked = check(grant, kind, raw_spec, count_base)
    except PolicyViolation as exc:
        _refused(
            session,
            ledger,
            caller,
            grant,
            {"kind": kind.value, "spec_sha256": digest, "rule": exc.details.get("rule"), "column": exc.details.get("column")},
        )
        raise
    except TooExpensive as exc:
        details = {"kind": kind.value, "spec_sha256": digest, "rule": exc.code, "limit": exc.details.get("limit")}
        _refused(session, ledger, caller, grant, details)
        raise
    _precheck_budget(session, ledger, caller, grant, checked, digest)
    _, versions = schemas_of(grant)
    job = Job(
        grant_id=grant.id,
        org_id=caller.org_id,
        submitted_by=caller.user_id,
        kind=kind.value,
        spec=checked.spec,
        spec_sha256=digest,
        policy_version=checked.policy_version,
        dataset_versions={name: versions[name] for name in checked.datasets},
        status=JobStatus.QUEUED.value,
        stage=JobStage.QUEUED.value,
        progress=0.0,
        attempts=0,
        max_attempts=max_attempts,
        timeout_seconds=checked.timeout or default_timeout,
    )
    session.add(job)
    session.flush()
    ledger.append(session, actor=caller.user_id, action="job.submit", object_type="job", object_id=job.id, details=transition_details(job))
    return job


def _precheck_budget(session: Session, ledger: Ledger, caller: Principal, grant: Grant, checked: Checked, digest: str) -> None:
    """Refuse (429, on the ledger) a DP job whose ε does not fit the per-job cap, the grant or the dataset's cap.

    A job that selects keys also needs its δ share to fit what remains of the grant's δ.
    """
    epsilon = budget.job_epsilon(checked.spec)
    if checked.policy.dp is None or epsilon is None:
        return
    delta = selection_delta(checked.policy.dp, epsilon) if selects_keys(checked.plan) else Delta(0.0)
    try:
        budget.precheck(session, grant, checked.datasets[0], checked.policy.dp, epsilon, delta)
    except BudgetExhausted as exc:
        _refused(session, ledger, caller, grant, {"spec_sha256": digest, "rule": "budget_exhausted", "limit": exc.details.get("limit")})
        raise


def selects_keys(plan: Plan) -> bool:
    """Whether the job's DP answer selects keys (and so spends δ)."""
    if isinstance(plan, DPStats):
        return plan.plan.selects_keys
    return isinstance(plan, QueryPlan) and plan.dp is not None and plan.dp.selects_keys


def _refused(session: Session, ledger: Ledger, caller: Principal, grant: Grant, details: dict[str, Any]) -> None:
    """Record a refused submission and commit it: the caller's transaction is about to roll back with the error."""
    ledger.append(session, actor=caller.user_id, action="job.refused", object_type="grant", object_id=grant.id, details=details)
    session.commit()


def transition_details(job: Job, **extra: Any) -> dict[str, Any]:
    """What every job event records: hashes and versions, never a value."""
    return {
        "status": job.status,
        "kind": job.kind,
        "grant_id": job.grant_id,
        "spec_sha256": job.spec_sha256,
        "dataset_versions": job.dataset_versions,
        "policy_version": job.policy_version,
        **extra,
    }


def visible(session: Session, caller: Principal, job_id: str) -> Job:
    """Analysts see their own jobs; stewards the jobs on their bureau's grants; auditors all (bureau auditors: their bureau's)."""
    job = session.get(Job, job_id)
    if job is None or not _may_see(session, caller, job):
        raise NotFound("no such job")
    return job


def _may_see(session: Session, caller: Principal, job: Job) -> bool:
    if caller.role is Role.ANALYST:
        return job.submitted_by == caller.user_id
    if caller.role in (Role.STEWARD, Role.AUDITOR):
        grant = session.get(Grant, job.grant_id)
        assert grant is not None
        if caller.role is Role.AUDITOR and caller.org_kind.value == "audit":
            return True
        return grant.bureau_org_id == caller.org_id
    return False


def list_visible(
    session: Session, caller: Principal, status: JobStatus | None = None, limit: int | None = 200, before: datetime | None = None
) -> list[Job]:
    """Visible jobs, newest first; ``before`` pages on (the ``created_at`` of the last one seen)."""
    query = select(Job).order_by(Job.created_at.desc())
    if limit is not None:
        query = query.limit(limit)
    if status is not None:
        query = query.where(Job.status == status.value)
    if before is not None:
        query = query.where(Job.created_at < before)
    if caller.role is Role.ANALYST:
        query = query.where(Job.submitted_by == caller.user_id)
    elif not (caller.role is Role.AUDITOR and caller.org_kind.value == "audit"):
        query = query.join(Grant, Grant.id == Job.grant_id).where(Grant.bureau_org_id == caller.org_id)
    return list(session.scalars(query))


def owned(session: Session, caller: Principal, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.submitted_by != caller.user_id:
        raise NotFound("no such job")
    return job


SCRIPT_STARTED = "a script job can be cancelled only while it is queued: once started, it ends by itself, at its time limit at the latest"


def cancel(session: Session, ledger: Ledger, caller: Principal, job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop and its worker ends it."""
    job = owned(session, caller, job_id)
    status = JobStatus(job.status)
    if job.kind == JobKind.SCRIPT.value and status is not JobStatus.QUEUED:
        # Whether a started script is still running is what its analyst must not learn (``analyst_view``):
        # a cancel answered by its real state, or ended by whether it came before the script did, would say.
        raise Conflict(SCRIPT_STARTED)
    if status.terminal or status is JobStatus.HELD:
        raise Conflict(f"the job is {status.value} and can no longer be cancelled")
    if status is JobStatus.QUEUED:
        job.status, job.finished_at, job.reason = JobStatus.CANCELLED.value, datetime.now(UTC), "cancelled by the analyst"
        ledger.append(
            session, actor=caller.user_id, action="job.cancelled", object_type="job", object_id=job.id, details=transition_details(job)
        )
    elif not job.cancel_requested:
        job.cancel_requested = True
        ledger.append(
            session,
            actor=caller.user_id,
            action="job.cancel_requested",
            object_type="job",
            object_id=job.id,
            details=transition_details(job),
        )
    return job
