"""The privacy-budget ledger of DP grants: refused at submission when it cannot fit, charged in the releasing transaction.

Four limits bound every job's ε: the policy's per-job cap, what remains of the grant's total, what
remains of the organisation's budget on the dataset, and what remains of the dataset's global cap
(shared by every grant on the dataset, and required before a DP grant is approved). The organisation's
budget is the grant's total minus everything the organisation's grants have spent on the dataset: an
enterprise cannot multiply its budget by asking for several grants on the same data. A job that selects
keys by DP (a grouping column without a declared domain) also spends δ: its share of the grant's
``delta_total`` in proportion to its ε (``policies.budget.delta_share``), which must fit what remains
of the grant's δ. Every job that read the data spends its ε, released or not (a failure, a timeout,
a cancellation after the start are answers too): ``charge`` runs in the transaction that ends the job,
with the grant and dataset rows locked and the remaining budget recomputed from the spends, so
parallel releases can never overspend; a job that never started (cancelled while queued) spends
nothing. Amounts are
stored as exact decimal strings and added up as fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core.errors import BudgetExhausted, Conflict, Forbidden, NotFound
from core.values import JobStatus, Role
from policies.budget import Delta, Epsilon, selection_delta
from policies.model import DPSettings, Policy
from sandbox.models import BudgetSpend, Dataset, DatasetVersion, Grant, GrantPolicy, Job
from sandbox.service.auth import Principal
from sandbox.service.grants import current_policy
from sandbox.service.ledger import Ledger


def exact_text(value: float) -> str:
    """The shortest decimal that reads back as ``value``: what the ledger stores and adds up exactly."""
    return repr(float(value))


def job_epsilon(spec: dict[str, Any]) -> Epsilon | None:
    """The ε a job states (only DP jobs state one)."""
    value = spec.get("epsilon")
    return None if value is None else Epsilon(float(value))


def spent_delta(job: Job, settings: DPSettings, epsilon: Epsilon) -> Delta:
    """The δ a job's release spent: its share when its answer selected keys (the worker's summary says so), else 0."""
    dp = (job.verdict or {}).get("dp") or {}
    return selection_delta(settings, epsilon) if dp.get("key_selection") else Delta(0.0)


@dataclass(frozen=True)
class Spent:
    epsilon: Fraction
    delta: Fraction


def grant_spent(session: Session, grant_id: str) -> Spent:
    """The grant's spends added up exactly; each distinct amount is read once (a grant's jobs often spend alike)."""
    rows = session.execute(
        select(BudgetSpend.epsilon, BudgetSpend.delta, func.count())
        .where(BudgetSpend.grant_id == grant_id)
        .group_by(BudgetSpend.epsilon, BudgetSpend.delta)
    ).all()
    return Spent(sum((Fraction(e) * n for e, _, n in rows), Fraction(0)), sum((Fraction(d) * n for _, d, n in rows), Fraction(0)))


def shared_spent(session: Session, grant: Grant, dataset_id: str) -> Spent:
    """What counts against the grant's total for a job on ``dataset_id``: the grant's own spends on any dataset
    and every spend of the organisation's grants on that dataset, each spend once."""
    rows = session.execute(
        select(BudgetSpend.epsilon, BudgetSpend.delta, func.count())
        .join(Grant, Grant.id == BudgetSpend.grant_id)
        .where(or_(BudgetSpend.grant_id == grant.id, and_(Grant.org_id == grant.org_id, BudgetSpend.dataset_id == dataset_id)))
        .group_by(BudgetSpend.epsilon, BudgetSpend.delta)
    ).all()
    return Spent(sum((Fraction(e) * n for e, _, n in rows), Fraction(0)), sum((Fraction(d) * n for _, d, n in rows), Fraction(0)))


def dataset_spent(session: Session, dataset_id: str) -> Fraction:
    rows = session.execute(
        select(BudgetSpend.epsilon, func.count()).where(BudgetSpend.dataset_id == dataset_id).group_by(BudgetSpend.epsilon)
    ).all()
    return sum((Fraction(e) * n for e, n in rows), Fraction(0))


def refusal(
    session: Session, grant: Grant, dataset: Dataset, settings: DPSettings, epsilon: Epsilon, delta: Delta
) -> dict[str, Any] | None:
    """Which limit ``epsilon`` (or ``delta``) would break, with the amounts, or None when it fits them all."""
    wanted = epsilon.exact
    per_job = Epsilon(settings.epsilon_per_job).exact
    if wanted > per_job:
        return {"limit": "epsilon_per_job", "requested": float(wanted), "available": float(per_job)}
    total, total_delta = Epsilon(settings.epsilon_total).exact, Delta(settings.delta_total).exact
    spent = grant_spent(session, grant.id)
    if wanted > total - spent.epsilon:
        return {"limit": "grant", "requested": float(wanted), "available": float(max(total - spent.epsilon, Fraction(0)))}
    if delta.exact > total_delta - spent.delta:
        return {"limit": "grant_delta", "requested": float(delta.exact), "available": float(max(total_delta - spent.delta, Fraction(0)))}
    shared = shared_spent(session, grant, dataset.id)
    if wanted > total - shared.epsilon or delta.exact > total_delta - shared.delta:
        return {"limit": "organisation", "requested": float(wanted), "available": float(max(total - shared.epsilon, Fraction(0)))}
    if dataset.epsilon_cap is not None:
        left_cap = Fraction(dataset.epsilon_cap) - dataset_spent(session, dataset.id)
        if wanted > left_cap:
            return {"limit": "dataset_cap", "requested": float(wanted), "available": float(max(left_cap, Fraction(0)))}
    return None


def precheck(session: Session, grant: Grant, dataset_name: str, settings: DPSettings, epsilon: Epsilon, delta: Delta) -> None:
    """At submission: refuse (429) a job whose ε (or δ) does not fit what has been spent so far."""
    dataset = next(link.dataset for link in grant.datasets if link.dataset.name == dataset_name)
    problem = refusal(session, grant, dataset, settings, epsilon, delta)
    if problem is not None:
        raise BudgetExhausted(_message(problem["limit"]), details=problem)


def _message(limit: str) -> str:
    return {
        "epsilon_per_job": "the job's epsilon exceeds the policy's per-job cap",
        "grant": "the job's epsilon exceeds what remains of the grant's privacy budget",
        "grant_delta": "the job's delta (for DP key selection) exceeds what remains of the grant's delta",
        "organisation": "the job's epsilon (or delta) exceeds what remains of your organisation's budget on the dataset across its grants",
        "dataset_cap": "the job's epsilon exceeds what remains of the dataset's global epsilon cap",
    }[limit]


def charge(session: Session, ledger: Ledger, job: Job, actor: str, ended: JobStatus | None = None) -> bool:
    """Record the job's spend inside the transaction that ends it; False (nothing recorded) if a release no longer fits.

    ``ended`` is None for a release. Otherwise the job read the data and ends without releasing
    (failed, timed out, cancelled while running, blocked, rejected): whether it failed, and when, can
    depend on the data, so a free failure would be a noise-less oracle. Its ε is spent all the same
    (δ is spent only by released key selection), even past what remains: the spend records what
    happened, and later jobs are refused. ``fits_now`` keeps a job that no longer fits from starting.

    Locks the grant row, then the dataset row, and recomputes what remains from the spends: two jobs
    ending at once are serialised here, and the second sees the first's spend. A job already charged
    (released once, retried) is not charged again. Its δ follows its verdict (the summary of its
    answer), which the caller has set: a job whose answer selected keys spends its δ share.
    """
    epsilon = job_epsilon(job.spec)
    if epsilon is None:
        return True
    if session.scalar(select(BudgetSpend.id).where(BudgetSpend.job_id == job.id)) is not None:
        return True
    grant = session.scalar(select(Grant).where(Grant.id == job.grant_id).with_for_update().execution_options(populate_existing=True))
    dataset_id = _dataset_id(session, job)
    dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update().execution_options(populate_existing=True))
    settings = _pinned_settings(session, job)
    if grant is None or dataset is None or settings is None:
        return False
    delta = spent_delta(job, settings, epsilon) if ended is None else Delta(0.0)
    over = refusal(session, grant, dataset, settings, epsilon, delta) is not None
    if over and ended is None:
        return False
    amounts = {"epsilon": exact_text(epsilon.value), "delta": exact_text(delta.value)}
    session.add(BudgetSpend(job_id=job.id, grant_id=grant.id, dataset_id=dataset.id, **amounts))
    ended_details = {} if ended is None else {"ended": ended.value, "over_budget": over}
    ledger.append(
        session,
        actor=actor,
        action="budget.spend",
        object_type="grant",
        object_id=grant.id,
        details={"job_id": job.id, "dataset_id": dataset.id, **amounts, **ended_details},
    )
    return True


def fits_now(session: Session, job: Job) -> bool:
    """Whether the job's ε still fits every limit (True for a job without ε): asked before a DP job starts reading.

    Not the atomic check (``charge`` is); it keeps a job queued before others spent the budget from
    reading the data, failing and then being charged past the limits.
    """
    epsilon = job_epsilon(job.spec)
    if epsilon is None:
        return True
    grant = session.get(Grant, job.grant_id)
    dataset = session.get(Dataset, _dataset_id(session, job))
    settings = _pinned_settings(session, job)
    if grant is None or dataset is None or settings is None:
        return False
    return refusal(session, grant, dataset, settings, epsilon, Delta(0.0)) is None


def _dataset_id(session: Session, job: Job) -> str:
    version_id = next(iter(job.dataset_versions.values()))["version_id"]
    return str(session.scalars(select(DatasetVersion.dataset_id).where(DatasetVersion.id == version_id)).one())


def _pinned_settings(session: Session, job: Job) -> DPSettings | None:
    pinned = session.scalars(
        select(GrantPolicy.policy).where(GrantPolicy.grant_id == job.grant_id, GrantPolicy.version == job.policy_version)
    ).one()
    return Policy.model_validate(pinned).dp


def view(session: Session, grant: Grant) -> dict[str, Any] | None:
    """What the grant's current policy allows, what its jobs spent, and each dataset's global cap."""
    found = current_policy(grant)
    settings = found[0].dp if found is not None else None
    if settings is None:
        return None
    spent = _binding_spent(session, grant)
    total_e, total_d = Epsilon(settings.epsilon_total).exact, Fraction(exact_text(settings.delta_total))
    caps = [
        {
            "dataset_id": link.dataset.id,
            "epsilon_cap": None if link.dataset.epsilon_cap is None else float(Fraction(link.dataset.epsilon_cap)),
            "epsilon_spent": float(dataset_spent(session, link.dataset.id)),
        }
        for link in grant.datasets
    ]
    return {
        "epsilon_total": float(total_e),
        "epsilon_spent": float(spent.epsilon),
        "epsilon_remaining": float(max(total_e - spent.epsilon, Fraction(0))),
        "delta_total": float(total_d),
        "delta_spent": float(spent.delta),
        "delta_remaining": float(max(total_d - spent.delta, Fraction(0))),
        "dataset_caps": caps,
    }


def _binding_spent(session: Session, grant: Grant) -> Spent:
    """The spend that binds the grant: the largest of what counts against it on each of its datasets."""
    spends = [shared_spent(session, grant, link.dataset.id) for link in grant.datasets] or [grant_spent(session, grant.id)]
    return Spent(max(s.epsilon for s in spends), max(s.delta for s in spends))


def set_cap(session: Session, ledger: Ledger, caller: Principal, dataset_id: str, cap: float) -> dict[str, Any]:
    """A steward of the dataset's bureau sets its global ε cap; never below what has already been spent."""
    dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())
    if dataset is None:
        raise NotFound("no such dataset")
    if caller.role is not Role.STEWARD or dataset.org_id != caller.org_id:
        raise Forbidden("only a steward of the dataset's bureau sets its epsilon cap")
    wanted = Epsilon(cap).exact
    spent = dataset_spent(session, dataset.id)
    if wanted < spent:
        raise Conflict("the cap would be below what has already been spent", details={"epsilon_spent": float(spent)})
    dataset.epsilon_cap = exact_text(cap)
    ledger.append(
        session,
        actor=caller.user_id,
        action="dataset.epsilon_cap",
        object_type="dataset",
        object_id=dataset.id,
        details={"epsilon_cap": dataset.epsilon_cap, "epsilon_spent": str(spent)},
    )
    return {"dataset_id": dataset.id, "epsilon_cap": float(wanted), "epsilon_spent": float(spent)}
