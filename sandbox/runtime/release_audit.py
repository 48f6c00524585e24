"""The release audit in the releasing transaction: lock the version, audit against its history, store.

Both releasing paths call it -- the worker's ``Queue.finish`` and an auditor's release
(``sandbox.api.reviews``) -- inside their one transaction, after the job row is locked and the budget
charged, before any ledger append. ``lock`` takes the dataset version's row ``FOR UPDATE`` on
PostgreSQL (on SQLite the writer's ``BEGIN IMMEDIATE`` already serialises writers), so two releases
on one version are audited one after the other and the second sees the first's cells: the check and
the record are one critical section.

Earlier releases come from every organisation and every kind that stored populations. Their
decrypted populations and span are cached per process and version (``_CACHE``), keyed by the set of
stored rows they were built from: under the lock a release reads only the ids, and decrypts and adds
only the rows it has not seen (another process's releases). A release this process stored is added
to the cache with the span the audit already computed; should its transaction roll back, the cache
names a row the database lacks and is rebuilt from the database on the next release.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from pyroaring import BitMap
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crypto import envelope, keywrap
from crypto.keyring import KeyStore
from policies import audit
from policies.model import Policy
from sandbox.models import AuditFinding, CellPopulation, DatasetVersion, GrantPolicy, Job, new_id


def pinned_policy(session: Session, job: Job) -> Policy:
    pinned = session.scalars(
        select(GrantPolicy).where(GrantPolicy.grant_id == job.grant_id, GrantPolicy.version == job.policy_version)
    ).one()
    return Policy.model_validate(pinned.policy)


def lock(session: Session, version_id: str) -> None:
    """Serialise releases on one version (PostgreSQL: a row lock until commit; SQLite: the writer lock is already held)."""
    session.execute(select(DatasetVersion.id).where(DatasetVersion.id == version_id).with_for_update())


@dataclass
class _Cached:
    ids: frozenset[str]
    history: audit.History


_CACHE: dict[str, _Cached] = {}
_CACHE_LOCK = threading.Lock()


def check(session: Session, keys: KeyStore, job: Job, version_id: str, cells: Mapping[int, BitMap], k: int) -> audit.Decision:
    """Audit ``cells`` (row -> population) of ``job`` against every release of the version; record the findings.

    The caller holds the transaction; the lock taken here lasts until it commits.
    """
    lock(session, version_id)
    with _CACHE_LOCK:
        decision = audit.audit(_history(session, keys, version_id), job.id, dict(cells), k)
    for finding in decision.findings:
        session.add(
            AuditFinding(
                job_id=job.id, row_index=finding.row, rule=finding.rule.value, earlier_job_id=finding.earlier_job, detail=finding.detail
            )
        )
    return decision


def forget_findings(session: Session, job_id: str) -> None:
    """A job audited again (an auditor's release) keeps only its latest findings."""
    session.execute(delete(AuditFinding).where(AuditFinding.job_id == job_id))


def _history(session: Session, keys: KeyStore, version_id: str) -> audit.History:
    ids = frozenset(
        session.scalars(select(CellPopulation.id).where(CellPopulation.dataset_version_id == version_id, CellPopulation.released.is_(True)))
    )
    cached = _CACHE.get(version_id)
    if cached is None or not cached.ids <= ids:
        cached = _Cached(frozenset(), audit.History())
    missing = sorted(i for i in ids if i not in cached.ids)
    if missing:
        by_job: dict[str, list[BitMap]] = {}
        data_keys: dict[str, bytes] = {}  # one unwrap per job: its rows share its data key
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            stored = session.scalars(select(CellPopulation).where(CellPopulation.id.in_(chunk)).order_by(CellPopulation.created_at))
            for row in stored:
                if row.job_id not in data_keys:
                    data_keys[row.job_id] = keys.unwrap(row.wrapped_key, row.master_key_id, context=_context(row.job_id))
                by_job.setdefault(row.job_id, []).append(_open(data_keys[row.job_id], row))
        cached.history.record_many(list(by_job.items()))
        cached.ids = ids
    _CACHE[version_id] = cached
    return cached.history


def _context(job_id: str) -> str:
    return f"cell-populations:{job_id}"


def store(
    session: Session,
    keys: KeyStore,
    job: Job,
    version_id: str,
    cells: Mapping[int, BitMap],
    *,
    released: bool,
    span: audit.Span | None = None,
) -> None:
    """Seal and store a job's row populations under one data key of its own, wrapped by the master key.

    Released rows join the version's history in this process's cache too (with ``span``, the span
    after them, when the audit computed it).
    """
    if not cells:
        return
    data_key = keywrap.generate_key()
    wrapped, master_key_id = keys.wrap(data_key, context=_context(job.id))
    ids = []
    for row, population in cells.items():
        sealed = envelope.encrypt(data_key, population.serialize(), key_id=f"{job.id}:population:{row}")
        ids.append(new_id())
        session.add(
            CellPopulation(
                id=ids[-1],
                job_id=job.id,
                dataset_version_id=version_id,
                row_index=row,
                released=released,
                population=sealed,
                wrapped_key=wrapped,
                master_key_id=master_key_id,
            )
        )
    if released:
        _remember(version_id, job.id, ids, list(cells.values()), span)


def _remember(version_id: str, job_id: str, ids: list[str], populations: list[BitMap], span: audit.Span | None) -> None:
    with _CACHE_LOCK:
        cached = _CACHE.get(version_id)
        if cached is not None:
            cached.history.record(job_id, populations, span)
            cached.ids = cached.ids | frozenset(ids)


def _open(data_key: bytes, row: CellPopulation) -> BitMap:
    return BitMap.deserialize(envelope.decrypt(data_key, row.population, key_id=f"{row.job_id}:population:{row.row_index}"))


def held(session: Session, keys: KeyStore, job_id: str) -> dict[str, dict[int, BitMap]]:
    """A held job's stored populations: version id -> row -> population (empty when it stored none)."""
    out: dict[str, dict[int, BitMap]] = {}
    for row in session.scalars(select(CellPopulation).where(CellPopulation.job_id == job_id, CellPopulation.released.is_(False))):
        data_key = keys.unwrap(row.wrapped_key, row.master_key_id, context=_context(row.job_id))
        out.setdefault(row.dataset_version_id, {})[row.row_index] = _open(data_key, row)
    return out


def forget_held(session: Session, job_id: str) -> None:
    """A held job's unreleased populations, dropped (it is about to be audited and stored again, or was rejected)."""
    session.execute(delete(CellPopulation).where(CellPopulation.job_id == job_id, CellPopulation.released.is_(False)))


def findings(session: Session, job_id: str) -> list[dict[str, object]]:
    """What the audit found on a job, for auditors: row, rule, the earlier job it combines with, and detail."""
    found = session.scalars(select(AuditFinding).where(AuditFinding.job_id == job_id).order_by(AuditFinding.row_index))
    return [{"row": f.row_index, "rule": f.rule, "earlier_job_id": f.earlier_job_id, "detail": f.detail} for f in found]
