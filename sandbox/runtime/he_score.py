"""The worker side of consent-bound scoring (``he`` op ``score``): who is scored, the scores, each use recorded.

Of the distinct entities a job asks for, the worker drops, in this order:

1. those the grant already scored in ``max_jobs_per_entity`` jobs within the last ``period_days``
   (``over_quota``; counted from this grant's ``score_uses``, which only ever name entities the
   grant's own released jobs scored, so the count tells the analyst nothing new);
2. those without a current consent under the grant, those not in the dataset, and those with a
   missing feature: one count, ``unavailable``, on purpose, so that nothing tells "did not consent"
   from "is not in the data" (which would reveal who is in the data).

The rest are scored with ``crypto.paillier_bulk.linear_scores`` and every score is re-randomised
with a fresh encryption of zero: the analyst holds the private key and could otherwise recover the
ciphertext's randomness, a product of its own weights' randomness raised to the features.

Uses are recorded (``record_uses``) in the transaction that releases the job, under a lock on the
grant row, with consents and quotas checked again: a consent revoked, or a quota used up by another
job, while this one ran fails it with nothing released. ``score_uses`` is unique per (job, entity)
and a job's uses are written once, so a retried or re-reviewed job is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.values import JobKind, JobStage
from crypto import paillier, paillier_bulk
from crypto.keyring import KeyStore
from jobs.he.score import ScorePlan
from policies.model import Policy, ScoreSettings
from sandbox.models import Grant, GrantPolicy, Job, JobOutput, ScoreUse
from sandbox.runtime import outputs
from sandbox.service import consents
from sandbox.service.ledger import Ledger

BATCH = 256  # entities scored between two progress reports (each may stop a cancelled job)
CHANGED = "consents or scoring limits of some entities changed while the job ran; nothing was released: submit the job again"
COLUMNS = [{"name": "entity", "kind": "entity", "type": "string"}, {"name": "score", "kind": "ciphertext", "type": "string"}]

Stage = Callable[[JobStage, float], None]


@dataclass(frozen=True)
class Scored:
    table: pa.Table  # entity, score (a ciphertext under the analyst's key, as a decimal string)
    summary: dict[str, Any]
    entities: tuple[str, ...]  # the entities scored, to be recorded as uses when released


def over_quota(session: Session, grant_id: str, entities: Sequence[str], limits: ScoreSettings, now: datetime, job_id: str) -> set[str]:
    """Entities scored by ``max_jobs_per_entity`` other jobs of the grant within the period."""
    since = now - timedelta(days=limits.period_days)
    found: set[str] = set()
    for part in consents.chunks(entities):
        rows = session.execute(
            select(ScoreUse.entity, func.count(func.distinct(ScoreUse.job_id)))
            .where(ScoreUse.grant_id == grant_id, ScoreUse.entity.in_(part), ScoreUse.created_at > since, ScoreUse.job_id != job_id)
            .group_by(ScoreUse.entity)
        )
        found.update(entity for entity, uses in rows if uses >= limits.max_jobs_per_entity)
    return found


@dataclass(frozen=True)
class Eligibility:
    """Of a score job's entities: those over their quota, and those of the rest with a current consent."""

    over_quota: frozenset[str]
    consenting: frozenset[str]


def eligibility(session: Session, plan: ScorePlan, grant_id: str, job_id: str) -> Eligibility:
    """Quotas and consents now, for a run of job ``job_id`` under ``grant_id``."""
    now = datetime.now(UTC)
    quota = over_quota(session, grant_id, plan.entities, plan.limits, now, job_id)
    consenting = consents.current(session, grant_id, [e for e in plan.entities if e not in quota], now)
    return Eligibility(frozenset(quota), frozenset(consenting))


def score(plan: ScorePlan, table: pa.Table, eligible: Eligibility, stage: Stage) -> Scored:
    """Score the eligible entities of ``plan`` over the dataset's decrypted ``table``."""
    quota = eligible.over_quota
    candidates = [e for e in plan.entities if e not in quota]
    consenting = eligible.consenting
    rows = _features(plan, table, [e for e in candidates if e in consenting])
    entities = [e for e in candidates if e in rows]
    public = plan.public
    intercept = paillier.scalar_mul(public, plan.intercept, 10**plan.feature_scale) if plan.feature_scale else plan.intercept
    scores: list[int] = []
    for start in range(0, len(entities), BATCH):
        stage(JobStage.EXECUTE, 0.3 + 0.5 * start / len(entities))
        batch = [rows[e] for e in entities[start : start + BATCH]]
        computed = paillier_bulk.linear_scores(public, list(plan.weights), intercept, batch)
        fresh = paillier_bulk.encrypt_mantissas(public, [0] * len(computed))
        scores.extend(paillier.add(public, c, z) for c, z in zip(computed, fresh, strict=True))
    summary = {
        "status": "pass",
        "reason": "",
        "op": "score",
        "key": public.fingerprint,
        "scale": plan.result_scale,
        "weights_scale": plan.weights_scale,
        "feature_scale": plan.feature_scale,
        "features": list(plan.features),
        "requested": plan.requested,
        "distinct": len(plan.entities),
        "scored": len(entities),
        "over_quota": len(quota),
        "unavailable": len(candidates) - len(entities),
    }
    result = pa.table({"entity": pa.array(entities, pa.string()), "score": pa.array([str(s) for s in scores], pa.string())})
    return Scored(result, summary, tuple(entities))


def _features(plan: ScorePlan, table: pa.Table, wanted: Sequence[str]) -> dict[str, list[int]]:
    """Each wanted entity's features, encoded at the features' scale; entities not in the data or with a missing feature are left out."""
    if not wanted:
        return {}
    units = pc.cast(table.column(plan.privacy_unit), pa.string())
    mask = pc.is_in(units, value_set=pa.array(wanted, pa.string()))
    found = table.filter(mask)
    keys = pc.cast(found.column(plan.privacy_unit), pa.string()).to_pylist()
    columns = [found.column(f).to_pylist() for f in plan.features]
    rows: dict[str, list[int]] = {}
    for i, entity in enumerate(keys):
        values = [column[i] for column in columns]
        if entity is None or any(v is None for v in values):
            continue
        rows[entity] = [paillier.encode(v, plan.feature_scale, plan.public) for v in values]
    return rows


def record_uses(session: Session, ledger: Ledger, job: Job, entities: Sequence[str], actor: str) -> str | None:
    """In the releasing transaction: check consents and quotas again and record one use per scored entity.

    Returns None when the release may go ahead (or the uses were recorded already), else the reason
    it may not. Locks the grant row first, so that two releases of the same grant are serialised and
    the second sees the first's uses.
    """
    if not entities or session.scalar(select(ScoreUse.id).where(ScoreUse.job_id == job.id).limit(1)) is not None:
        return None
    session.scalar(select(Grant).where(Grant.id == job.grant_id).with_for_update().execution_options(populate_existing=True))
    pinned = session.scalars(
        select(GrantPolicy.policy).where(GrantPolicy.grant_id == job.grant_id, GrantPolicy.version == job.policy_version)
    ).one()
    policy = Policy.model_validate(pinned)
    limits = policy.he.score if policy.he is not None else None
    now = datetime.now(UTC)
    distinct = list(dict.fromkeys(entities))
    if limits is None or over_quota(session, job.grant_id, distinct, limits, now, job.id):
        return CHANGED
    if len(consents.current(session, job.grant_id, distinct, now)) != len(distinct):
        return CHANGED
    session.add_all(ScoreUse(grant_id=job.grant_id, entity=entity, job_id=job.id, created_at=now) for entity in distinct)
    ledger.append(
        session,
        actor=actor,
        action="score.use",
        object_type="job",
        object_id=job.id,
        details={"grant_id": job.grant_id, "entities": len(distinct), "entities_sha256": consents.entities_digest(distinct)},
    )
    return None


def record_released(session: Session, ledger: Ledger, job: Job, keys: KeyStore, actor: str) -> str | None:
    """``record_uses`` for a held scoring job an auditor releases: the scored entities come from its sealed output."""
    if job.kind != JobKind.HE.value:
        return None
    output = session.get(JobOutput, job.id)
    if output is None:
        return None
    released = outputs.open_released(keys, output)
    if released.get("summary", {}).get("op") != "score":
        return None
    return record_uses(session, ledger, job, [row["entity"] for row in released["rows"]], actor)
