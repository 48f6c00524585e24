"""The ledger for auditors: events page by page (filtered by action, object and time), verification of the
whole chain, and a segment with its signed checkpoints for offline verification (the console's download)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.values import Role
from crypto import ledger as ledger_crypto
from sandbox.api.routing import endpoint
from sandbox.api.schemas import CheckpointOut, EventList, EventOut, EventsQuery, LedgerExport, VerifyOut
from sandbox.db import read_session
from sandbox.keys import SIGNING_KEY_KIND
from sandbox.models import DomainKey, LedgerCheckpoint, LedgerEvent
from sandbox.service import ledger as ledger_service
from sandbox.service.auth import Principal

AUDITOR = frozenset({Role.AUDITOR})
MAX_EXPORT = 10_000  # events in one exported segment; a longer range is exported in several


def _details(raw: str) -> dict[str, Any]:
    """A tampered row may hold anything; show it as unreadable rather than fail (verify names it)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"unreadable": True}


def event_out(e: LedgerEvent) -> EventOut:
    return EventOut(
        seq=e.seq,
        ts=e.ts,
        actor=e.actor,
        action=e.action,
        object_type=e.object_type,
        object_id=e.object_id,
        details=_details(e.details),
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def _moment(value: datetime) -> str:
    """A moment as the ledger writes ``ts`` (UTC, ISO 8601 with microseconds), so that the text compares in time order."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _filtered(query: EventsQuery) -> Select[LedgerEvent]:
    chosen = select(LedgerEvent).where(LedgerEvent.seq > query.after)
    if query.action:
        chosen = chosen.where(LedgerEvent.action == query.action)
    if query.object_id:
        chosen = chosen.where(LedgerEvent.object_id == query.object_id)
    if query.since is not None:
        chosen = chosen.where(LedgerEvent.ts >= _moment(query.since))
    if query.until is not None:
        chosen = chosen.where(LedgerEvent.ts < _moment(query.until))
    return chosen


def event_page(session: Session, query: EventsQuery) -> EventList:
    """The events ``GET /audit/events`` answers: after ``query.after``, filtered, oldest first; ``next_after`` pages on."""
    rows = list(session.scalars(_filtered(query).order_by(LedgerEvent.seq).limit(query.limit)))
    next_after = rows[-1].seq if len(rows) == query.limit else None
    return EventList(items=[event_out(e) for e in rows], next_after=next_after)


def verification(session: Session) -> VerifyOut:
    """The whole chain and its signed checkpoints verified, as ``GET /audit/verify`` answers."""
    public = _public_key(session)
    report = ledger_service.verify(session, public)
    return VerifyOut(**report.as_dict(), public_key_fingerprint=ledger_crypto.fingerprint(public) if public else None)


def segment(session: Session, first: int, last: int) -> LedgerExport:
    """Events ``first..last`` (at most ``MAX_EXPORT``) as ``GET /audit/events`` shows them, with their checkpoints and the public key."""
    last = min(last, first + MAX_EXPORT - 1)
    in_range = LedgerEvent.seq.between(first, last)
    events = [event_out(e) for e in session.scalars(select(LedgerEvent).where(in_range).order_by(LedgerEvent.seq))]
    checkpoints = session.scalars(select(LedgerCheckpoint).where(LedgerCheckpoint.seq.between(first, last)).order_by(LedgerCheckpoint.seq))
    public = _public_key(session)
    return LedgerExport(
        exported_at=datetime.now(UTC),
        first=first,
        last=events[-1].seq if events else last,
        events=events,
        checkpoints=[
            CheckpointOut(
                seq=c.seq,
                head_hash=c.head_hash,
                signed_at=c.signed_at,
                signature=base64.b64encode(c.signature).decode("ascii"),
                key_fingerprint=c.key_fingerprint,
            )
            for c in checkpoints
        ],
        public_key_pem=ledger_crypto.public_to_pem(public) if public else None,
        public_key_fingerprint=ledger_crypto.fingerprint(public) if public else None,
    )


def _public_key(session: Session) -> bytes | None:
    return session.scalar(select(DomainKey.public_der).where(DomainKey.kind == SIGNING_KEY_KIND))


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/audit/events",
        "GET",
        summary="Ledger events after a sequence number, filtered by action, object and time",
        roles=AUDITOR,
        query=EventsQuery,
        response=EventList,
        errors=(400, 401, 403),
    )
    def events(caller: Principal, query: EventsQuery) -> EventList:
        return event_page(read_session(), query)

    @endpoint(
        bp,
        "/audit/verify",
        "GET",
        summary="Verify the hash chain and the signed checkpoints",
        roles=AUDITOR,
        response=VerifyOut,
        errors=(401, 403),
    )
    def verify(caller: Principal) -> VerifyOut:
        return verification(read_session())
