"""The audit ledger: append-only, hash-chained events with signed checkpoints, and its verifier.

Each event's hash covers its body and the previous event's hash, so editing, deleting, inserting
or reordering any row breaks the chain at that row. The head row and the signed checkpoints catch
deletion of the newest events. Details hold identifiers, hashes and counts, never a data value or
a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto import ledger as ledger_crypto
from crypto.keyring import KeyStore
from sandbox.keys import WrappedSigningKey, unwrap_signing_key, wrapped_signing_key
from sandbox.models import LedgerCheckpoint, LedgerEvent, LedgerHead

HEAD_ID = 1


@dataclass(frozen=True)
class Report:
    ok: bool
    length: int
    head: str
    first_bad_seq: int | None
    problem: str | None
    checkpoints: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head": self.head,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "checkpoints": self.checkpoints,
        }


def event_body(event: LedgerEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "ts": event.ts,
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": json.loads(event.details),
    }


@dataclass(frozen=True)
class _Signing:
    """The signing key as last unwrapped, and the row it came from (its wrapping and its public key)."""

    row: WrappedSigningKey
    signer: ledger_crypto.Signer
    fingerprint: str


class Ledger:
    """Appends events; signs a checkpoint of the head every ``checkpoint_every`` events.

    The signing key is unwrapped once per process, not at every checkpoint: it is kept in memory
    (never written anywhere) together with the row it came from, and unwrapped again whenever that
    row changes, so a rotation of the master key (which re-wraps it) or a new key is picked up at the
    next checkpoint.
    """

    def __init__(self, keys: KeyStore, checkpoint_every: int) -> None:
        self.keys = keys
        self.checkpoint_every = checkpoint_every
        self._signing: _Signing | None = None

    def append(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        details: dict[str, Any] | None = None,
    ) -> LedgerEvent:
        """Append one event inside the caller's transaction; it exists only if that commits.

        The head row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite writers already hold the
        database lock), so concurrent appenders get consecutive sequence numbers.
        """
        head = session.execute(select(LedgerHead).where(LedgerHead.id == HEAD_ID).with_for_update()).scalar_one()
        event = LedgerEvent(
            seq=head.seq + 1,
            ts=datetime.now(UTC).isoformat(timespec="microseconds"),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=ledger_crypto.canonical(details or {}).decode("utf-8"),
            prev_hash=head.hash,
        )
        event.hash = ledger_crypto.event_hash(head.hash, event_body(event))
        session.add(event)
        head.seq, head.hash = event.seq, event.hash
        if event.seq % self.checkpoint_every == 0:
            self._checkpoint(session, event)
        session.flush()
        return event

    def _checkpoint(self, session: Session, event: LedgerEvent) -> None:
        signing = self._signing_key(session)
        signature = signing.signer.sign(ledger_crypto.checkpoint_message(event.seq, event.hash))
        session.add(
            LedgerCheckpoint(
                seq=event.seq,
                head_hash=event.hash,
                signed_at=event.ts,
                signature=signature,
                key_fingerprint=signing.fingerprint,
            )
        )

    def _signing_key(self, session: Session) -> _Signing:
        row = wrapped_signing_key(session)
        signing = self._signing
        if signing is None or signing.row != row:
            signer = ledger_crypto.Signer(unwrap_signing_key(row, self.keys))
            signing = self._signing = _Signing(row, signer, ledger_crypto.fingerprint(row.public_der))
        return signing


def verify(session: Session, public_der: bytes | None) -> Report:
    """Walk the whole chain; report the first sequence number at which it stops being intact.

    A forged event that carries a correctly recomputed hash still contradicts the signed
    checkpoint at its position, so checkpoints are checked against the intact prefix too and the
    lowest bad position wins.
    """
    prev, expected_seq, hashes = ledger_crypto.GENESIS_HASH, 1, {0: ledger_crypto.GENESIS_HASH}
    chain_bad: tuple[int, str] | None = None
    for event in session.scalars(select(LedgerEvent).order_by(LedgerEvent.seq)):
        problem = _event_problem(event, expected_seq, prev)
        if problem:
            chain_bad = (expected_seq, problem)
            break
        hashes[event.seq] = event.hash
        prev, expected_seq = event.hash, expected_seq + 1
    length = expected_seq - 1
    checkpoints = list(session.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.seq)))
    if chain_bad is not None:
        earlier = [c for c in checkpoints if c.seq < chain_bad[0]]
        found = [p for p in (_checkpoint_problem(earlier, hashes, length, public_der), chain_bad) if p is not None]
    else:
        found = [p for p in (_head_problem(session, length, prev), _checkpoint_problem(checkpoints, hashes, length, public_der)) if p]
    if not found:
        return Report(True, length, prev, None, None, len(checkpoints))
    first = min(found)
    return Report(False, length, prev, first[0], first[1], len(checkpoints))


def _event_problem(event: LedgerEvent, expected_seq: int, prev: str) -> str | None:
    if event.seq != expected_seq:
        return f"sequence jumps to {event.seq}"
    if event.prev_hash != prev:
        return "previous hash does not match the preceding event"
    try:
        body = event_body(event)
    except ValueError:
        return "details are not valid JSON"
    if ledger_crypto.event_hash(prev, body) != event.hash:
        return "event hash does not match its content"
    return None


def _head_problem(session: Session, length: int, last_hash: str) -> tuple[int, str] | None:
    head = session.get(LedgerHead, HEAD_ID)
    if head is None:
        return (length + 1, "the ledger head row is missing")
    if head.seq != length or head.hash != last_hash:
        return (min(head.seq, length) + 1, f"the head names event {head.seq} but the chain ends at {length}")
    return None


def _checkpoint_problem(
    checkpoints: list[LedgerCheckpoint], hashes: dict[int, str], length: int, public_der: bytes | None
) -> tuple[int, str] | None:
    for checkpoint in checkpoints:
        if checkpoint.seq > length:
            return (length + 1, f"a signed checkpoint covers event {checkpoint.seq} beyond the end of the chain")
        if hashes.get(checkpoint.seq) != checkpoint.head_hash:
            return (checkpoint.seq, "a signed checkpoint disagrees with the chain")
        message = ledger_crypto.checkpoint_message(checkpoint.seq, checkpoint.head_hash)
        if public_der is None or not ledger_crypto.verify(public_der, message, checkpoint.signature):
            return (checkpoint.seq, "checkpoint signature is not valid")
    return None
