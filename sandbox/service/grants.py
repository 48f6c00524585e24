"""Grants (场景授权): an enterprise's request to use datasets for a stated scenario, and the bureau's decision.

Who sees a grant: the requesting enterprise, the bureau that owns its datasets, and auditors.
Everyone else gets 404, as if it did not exist. An expired or revoked grant allows nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from core.errors import Conflict, EpsilonCapRequired, Forbidden, NotFound, ValidationFailed
from core.schema import DatasetSchema
from core.values import GrantStatus, JobKind, OrgKind, Role
from policies.model import Policy, check_against
from sandbox.models import Dataset, Grant, GrantDataset, GrantPolicy
from sandbox.service.auth import Principal
from sandbox.service.ledger import Ledger


def effective_status(grant: Grant, now: datetime | None = None) -> GrantStatus:
    status = GrantStatus(grant.status)
    now = now or datetime.now(UTC)
    if status is GrantStatus.APPROVED and grant.expires_at is not None and grant.expires_at <= now:
        return GrantStatus.EXPIRED
    return status


def current_policy(grant: Grant) -> tuple[Policy, int] | None:
    if not grant.policies:
        return None
    latest = grant.policies[-1]
    return Policy.model_validate(latest.policy), latest.version


def active_policy(grant: Grant, kind: JobKind, now: datetime | None = None) -> tuple[Policy, int]:
    """The policy under which a job of ``kind`` may run now; refuses anything else.

    This is the one gate every job passes: a grant that is requested, rejected, revoked or
    expired allows nothing, and a job kind the policy does not list is refused.
    """
    status = effective_status(grant, now)
    if status is not GrantStatus.APPROVED:
        raise Forbidden(f"the grant is {status.value} and allows nothing", details={"status": status.value})
    found = current_policy(grant)
    if found is None:
        raise Forbidden("the grant has no policy")
    policy, version = found
    if kind not in policy.job_kinds:
        raise Forbidden(f"the grant's policy does not allow {kind.value} jobs", details={"job_kind": kind.value})
    return policy, version


def visible_filter(caller: Principal) -> ColumnElement[bool]:
    """SQL condition for the grants ``caller`` may see."""
    if caller.role is Role.AUDITOR:
        # An audit office supervises every bureau; a bureau's own supervision unit only its bureau.
        return true() if caller.org_kind is OrgKind.AUDIT else Grant.bureau_org_id == caller.org_id
    if caller.role is Role.STEWARD:
        return Grant.bureau_org_id == caller.org_id
    if caller.role is Role.ANALYST:
        return Grant.org_id == caller.org_id
    return false()


def get_visible(session: Session, caller: Principal, grant_id: str) -> Grant:
    grant = session.scalar(select(Grant).where(Grant.id == grant_id, visible_filter(caller)))
    if grant is None:
        raise NotFound("no such grant")
    return grant


def list_visible(session: Session, caller: Principal) -> list[Grant]:
    return list(session.scalars(select(Grant).where(visible_filter(caller)).order_by(Grant.created_at)))


def request_grant(
    session: Session, ledger: Ledger, caller: Principal, dataset_ids: list[str], scenario: str, requested: dict[str, object]
) -> Grant:
    if len(set(dataset_ids)) != len(dataset_ids):
        raise ValidationFailed("dataset_ids lists a dataset twice", details={"field": "dataset_ids"})
    datasets = list(session.scalars(select(Dataset).where(Dataset.id.in_(dataset_ids))))
    found = {d.id for d in datasets}
    missing = [i for i in dataset_ids if i not in found]
    if missing:
        raise NotFound("no such dataset", details={"dataset_ids": missing})
    owners = {d.org_id for d in datasets}
    if len(owners) != 1:
        raise ValidationFailed("one grant covers datasets of one bureau; request one grant per bureau", details={"field": "dataset_ids"})
    _check_requested_columns(datasets, requested)
    grant = Grant(
        org_id=caller.org_id,
        bureau_org_id=owners.pop(),
        requested_by=caller.user_id,
        scenario=scenario,
        requested=requested,
        status=GrantStatus.REQUESTED.value,
    )
    session.add(grant)
    session.flush()
    by_id = {d.id: d for d in datasets}
    for position, dataset_id in enumerate(dataset_ids):
        session.add(GrantDataset(grant_id=grant.id, dataset_id=dataset_id, position=position))
    ledger.append(
        session,
        actor=caller.user_id,
        action="grant.request",
        object_type="grant",
        object_id=grant.id,
        details={
            "datasets": [by_id[i].name for i in dataset_ids],
            "job_kinds": requested.get("job_kinds", []),
            "scenario_chars": len(scenario),
        },
    )
    session.flush()
    session.refresh(grant)
    return grant


def _check_requested_columns(datasets: list[Dataset], requested: dict[str, object]) -> None:
    columns = requested.get("columns")
    if not isinstance(columns, dict):
        return
    by_name = {d.name: d for d in datasets}
    for name, wanted in columns.items():
        dataset = by_name.get(name)
        if dataset is None:
            raise ValidationFailed(
                f"requested.columns names {name!r}, which is not a dataset of this request", details={"field": "requested.columns"}
            )
        schema = DatasetSchema.model_validate(dataset.current.schema)
        unknown = [c for c in wanted if c not in schema.columns]
        if unknown:
            raise ValidationFailed(
                f"requested.columns.{name}: unknown column {unknown[0]!r}", details={"field": "requested.columns", "columns": unknown}
            )


def _decidable(session: Session, caller: Principal, grant_id: str) -> Grant:
    grant = get_visible(session, caller, grant_id)
    if caller.role is not Role.STEWARD:
        raise Forbidden("only a steward of the data's bureau may decide on a grant")
    return grant


def approve(session: Session, ledger: Ledger, caller: Principal, grant_id: str, policy: Policy, expires_at: datetime) -> Grant:
    grant = _decidable(session, caller, grant_id)
    if GrantStatus(grant.status) is not GrantStatus.REQUESTED:
        raise Conflict(f"the grant is {grant.status}; only a requested grant can be approved")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if expires_at <= now:
        raise ValidationFailed("expires_at must lie in the future", details={"field": "expires_at"})
    schemas = {link.dataset.name: DatasetSchema.model_validate(link.dataset.current.schema) for link in grant.datasets}
    requested_kinds = frozenset(JobKind(k) for k in grant.requested.get("job_kinds", []))
    check_against(policy, schemas, requested_kinds)
    if policy.dp is not None:
        _require_epsilon_caps(session, grant, policy.dp.epsilon_total)
    grant.status, grant.expires_at, grant.decided_at, grant.decided_by = GrantStatus.APPROVED.value, expires_at, now, caller.user_id
    session.add(GrantPolicy(grant_id=grant.id, version=1, policy=policy.model_dump(mode="json"), created_by=caller.user_id))
    ledger.append(
        session,
        actor=caller.user_id,
        action="grant.approve",
        object_type="grant",
        object_id=grant.id,
        details={"expires_at": expires_at.isoformat(), "policy_version": 1},
    )
    ledger.append(
        session,
        actor=caller.user_id,
        action="policy.create",
        object_type="grant",
        object_id=grant.id,
        details={"version": 1, "policy": policy.model_dump(mode="json")},
    )
    session.flush()
    session.refresh(grant)
    return grant


def _require_epsilon_caps(session: Session, grant: Grant, epsilon_total: float) -> None:
    """Refuse a DP grant on a dataset without a global ε cap: without one, every new grant would add its whole
    budget to what can be learnt about the dataset's people. The steward confirms a cap first; the suggestion
    is the sum of the budgets of the dataset's approved DP grants and this one (what lets each be spent whole).
    """
    missing = [link.dataset for link in grant.datasets if link.dataset.epsilon_cap is None]
    if not missing:
        return
    suggestions = [
        {"dataset_id": d.id, "name": d.name, "suggested_epsilon_cap": epsilon_total + _dp_budgets_on(session, d.id)} for d in missing
    ]
    names = ", ".join(d.name for d in missing)
    raise EpsilonCapRequired(
        f"set the epsilon cap of {names} (POST /datasets/{{id}}/epsilon-cap) before approving a DP grant on it",
        details={"datasets": suggestions},
    )


def _dp_budgets_on(session: Session, dataset_id: str) -> float:
    """The ε totals of the current policies of the approved DP grants on the dataset, added up."""
    grants = session.scalars(
        select(Grant)
        .join(GrantDataset, GrantDataset.grant_id == Grant.id)
        .where(GrantDataset.dataset_id == dataset_id, Grant.status == GrantStatus.APPROVED.value)
    ).all()
    totals = [found[0].dp.epsilon_total for g in grants if (found := current_policy(g)) is not None and found[0].dp is not None]
    return float(sum(totals))


def reject(session: Session, ledger: Ledger, caller: Principal, grant_id: str, reason: str) -> Grant:
    grant = _decidable(session, caller, grant_id)
    if GrantStatus(grant.status) is not GrantStatus.REQUESTED:
        raise Conflict(f"the grant is {grant.status}; only a requested grant can be rejected")
    return _close(session, ledger, caller, grant, GrantStatus.REJECTED, reason)


def revoke(session: Session, ledger: Ledger, caller: Principal, grant_id: str, reason: str) -> Grant:
    grant = _decidable(session, caller, grant_id)
    if GrantStatus(grant.status) is not GrantStatus.APPROVED:
        raise Conflict(f"the grant is {grant.status}; only an approved grant can be revoked")
    return _close(session, ledger, caller, grant, GrantStatus.REVOKED, reason)


def _close(session: Session, ledger: Ledger, caller: Principal, grant: Grant, status: GrantStatus, reason: str) -> Grant:
    grant.status, grant.reason = status.value, reason
    grant.decided_at, grant.decided_by = datetime.now(UTC), caller.user_id
    action = "grant.reject" if status is GrantStatus.REJECTED else "grant.revoke"
    ledger.append(session, actor=caller.user_id, action=action, object_type="grant", object_id=grant.id, details={"reason": reason})
    return grant
