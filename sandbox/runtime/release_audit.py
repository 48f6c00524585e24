"""The release audit in the releasing transaction: lock the version, audit against its history, store.

Both releasing paths call it -- the worker's ``Queue.finish`` and an auditor's release
(``sandbox.api.reviews``) -- inside their one transaction, after the job row is locked and the budget
charged, before any ledger append. ``lock`` takes the dataset version's row ``FOR UPDATE`` on
PostgreSQL (on SQLite the writer's ``BEGIN IMMEDIATE`` already serialises writers), so two releases
on one version are audited one after the other and the second sees the first's cells: the check and
the record are one critical section.

Earlier releases come from every organisation and every kind that stored populations. A job's rows
on a version are sealed together, one record (``CellPopulation``); released records are numbered
per version (``seq``) under the version's lock. Their decrypted populations and span are cached per
process and version (``_CACHE``), with the number and id of the last record they hold: under the
lock a release reads the version's last record (one index entry), and when another process stored
records since, decrypts and adds only those. A release this process stored is added to the cache
with the span the audit already computed; should its transaction roll back, the database's record
under that number is missing or another's, and the cache is rebuilt from the database on the next
release.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from pyroaring import BitMap
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.errors import InternalError
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
    seq: int  # the last released record the history holds (0: none)
    last_id: str | None  # its id: a rolled-back record leaves its number missing or another record's
    history: audit.History


_CACHE: dict[str, _Cached] = {}
_CACHE_LOCK = threading.Lock()
_LOAD_CHUNK = 200  # records per query on a cold start
_RECORD = (
    CellPopulation.seq,
    CellPopulation.job_id,
    CellPopulation.row_index,
    CellPopulation.population,
    CellPopulation.wrapped_key,
    CellPopulation.master_key_id,
)


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
    """The version's history as stored: the cached one, caught up with records stored since (or rebuilt)."""
    head = session.execute(
        select(CellPopulation.seq, CellPopulation.id)
        .where(CellPopulation.dataset_version_id == version_id, CellPopulation.seq.is_not(None))
        .order_by(CellPopulation.seq.desc())
        .limit(1)
    ).first()
    last, last_id = (int(head.seq or 0), head.id) if head is not None else (0, None)
    cached = _CACHE.get(version_id)
    if cached is None or not _current(session, version_id, cached, last, last_id):
        cached = _Cached(0, None, audit.History())
    if last > cached.seq:
        releases: list[tuple[str, list[BitMap]]] = []
        after = cached.seq
        while after < last:
            records = session.execute(
                select(*_RECORD)
                .where(CellPopulation.dataset_version_id == version_id, CellPopulation.seq > after, CellPopulation.seq <= last)
                .order_by(CellPopulation.seq)
                .limit(_LOAD_CHUNK)
            ).all()
            data_keys = keys.unwrap_many([(r.wrapped_key, r.master_key_id, _context(r.job_id)) for r in records])
            for record, data_key in zip(records, data_keys, strict=True):
                rows = _open(data_key, record.job_id, version_id, record.row_index, record.population)
                releases.append((record.job_id, list(rows.values())))
            after = int(records[-1].seq or last)
        cached.history.record_many(releases)
        cached.seq, cached.last_id = last, last_id
    _CACHE[version_id] = cached
    return cached.history


def _current(session: Session, version_id: str, cached: _Cached, last: int, last_id: str | None) -> bool:
    """Whether the database still holds every record ``cached`` holds (it may hold more: the cache catches up)."""
    if cached.seq == 0:
        return True
    if last <= cached.seq:
        return last == cached.seq and last_id == cached.last_id
    held_last = select(CellPopulation.id).where(CellPopulation.dataset_version_id == version_id, CellPopulation.seq == cached.seq)
    return session.scalar(held_last) == cached.last_id


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
    """Seal and store a job's row populations on a version as one record, under a data key of its own wrapped by the master key.

    Released rows take the version's next number (under its lock) and join the version's history in
    this process's cache too (with ``span``, the span after them, when the audit computed it).
    """
    if not cells:
        return
    data_key = keywrap.generate_key()
    wrapped, master_key_id = keys.wrap(data_key, context=_context(job.id))
    seq = None
    if released:
        lock(session, version_id)
        last = session.scalar(select(func.max(CellPopulation.seq)).where(CellPopulation.dataset_version_id == version_id))
        seq = (last or 0) + 1
    record = CellPopulation(
        id=new_id(),
        job_id=job.id,
        dataset_version_id=version_id,
        row_index=None,
        released=released,
        seq=seq,
        population=envelope.encrypt(data_key, _pack(cells), key_id=_record_key_id(job.id, version_id)),
        wrapped_key=wrapped,
        master_key_id=master_key_id,
    )
    session.add(record)
    if seq is not None:
        session.flush()  # the unique (version, seq) index refuses a number taken without the lock
        _remember(version_id, job.id, seq, record.id, list(cells.values()), span)


def _remember(version_id: str, job_id: str, seq: int, record_id: str, populations: list[BitMap], span: audit.Span | None) -> None:
    """Add a record this process stored to the cached history, when the cache holds everything before it."""
    with _CACHE_LOCK:
        cached = _CACHE.get(version_id)
        if cached is not None and cached.seq == seq - 1:
            cached.history.record(job_id, populations, span)
            cached.seq, cached.last_id = seq, record_id


_ROWS = struct.Struct(">I")
_ROW = struct.Struct(">iI")  # row index, length of its serialised bitmap


def _pack(cells: Mapping[int, BitMap]) -> bytes:
    """The rows' populations as one plaintext: their number, each row's index and length, then the portable roaring bitmaps."""
    bitmaps = [(row, population.serialize()) for row, population in cells.items()]
    head = _ROWS.pack(len(bitmaps)) + b"".join(_ROW.pack(row, len(data)) for row, data in bitmaps)
    return head + b"".join(data for _, data in bitmaps)


def _unpack(plain: bytes) -> dict[int, BitMap]:
    view = memoryview(plain)
    (count,) = _ROWS.unpack_from(view)
    offset, entries = _ROWS.size + count * _ROW.size, []
    for i in range(count):
        entries.append(_ROW.unpack_from(view, _ROWS.size + i * _ROW.size))
    out = {}
    for row, length in entries:
        out[row] = BitMap.deserialize(plain[offset : offset + length])
        offset += length
    if offset != len(plain):
        raise InternalError("a population record's framing does not match its length")
    return out


def _record_key_id(job_id: str, version_id: str) -> str:
    return f"{job_id}:populations:{version_id}"


def _open(data_key: bytes, job_id: str, version_id: str, row_index: int | None, sealed: bytes) -> dict[int, BitMap]:
    """A record's rows (row -> population); a record from before revision 0008 holds its one ``row_index``."""
    if row_index is not None:
        return {row_index: BitMap.deserialize(envelope.decrypt(data_key, sealed, key_id=f"{job_id}:population:{row_index}"))}
    return _unpack(envelope.decrypt(data_key, sealed, key_id=_record_key_id(job_id, version_id)))


def held(session: Session, keys: KeyStore, job_id: str) -> dict[str, dict[int, BitMap]]:
    """A held job's stored populations: version id -> row -> population (empty when it stored none)."""
    out: dict[str, dict[int, BitMap]] = {}
    for record in session.scalars(select(CellPopulation).where(CellPopulation.job_id == job_id, CellPopulation.released.is_(False))):
        data_key = keys.unwrap(record.wrapped_key, record.master_key_id, context=_context(record.job_id))
        version_id = record.dataset_version_id
        out.setdefault(version_id, {}).update(_open(data_key, job_id, version_id, record.row_index, record.population))
    return out


def forget_held(session: Session, job_id: str) -> None:
    """A held job's unreleased populations, dropped (it is about to be audited and stored again, or was rejected)."""
    session.execute(delete(CellPopulation).where(CellPopulation.job_id == job_id, CellPopulation.released.is_(False)))


def findings(session: Session, job_id: str) -> list[dict[str, object]]:
    """What the audit found on a job, for auditors: row, rule, the earlier job it combines with, and detail."""
    found = session.scalars(select(AuditFinding).where(AuditFinding.job_id == job_id).order_by(AuditFinding.row_index))
    return [{"row": f.row_index, "rule": f.rule, "earlier_job_id": f.earlier_job_id, "detail": f.detail} for f in found]
