"""The ledger for auditors: events page by page, and verification of the whole chain."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint
from sqlalchemy import select

from core.values import Role
from crypto import ledger as ledger_crypto
from sandbox.api.routing import endpoint
from sandbox.api.schemas import EventList, EventOut, EventsQuery, VerifyOut
from sandbox.db import read_session
from sandbox.keys import SIGNING_KEY_KIND
from sandbox.models import DomainKey, LedgerEvent
from sandbox.service import ledger as ledger_service
from sandbox.service.auth import Principal

AUDITOR = frozenset({Role.AUDITOR})


def _details(raw: str) -> dict[str, Any]:
    """A tampered row may hold anything; show it as unreadable rather than fail (verify names it)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"unreadable": True}


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/audit/events",
        "GET",
        summary="Ledger events after a sequence number",
        roles=AUDITOR,
        query=EventsQuery,
        response=EventList,
        errors=(400, 401, 403),
    )
    def events(caller: Principal, query: EventsQuery) -> EventList:
        rows = list(
            read_session().scalars(select(LedgerEvent).where(LedgerEvent.seq > query.after).order_by(LedgerEvent.seq).limit(query.limit))
        )
        items = [
            EventOut(
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
            for e in rows
        ]
        next_after = rows[-1].seq if len(rows) == query.limit else None
        return EventList(items=items, next_after=next_after)

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
        session = read_session()
        public = session.scalar(select(DomainKey.public_der).where(DomainKey.kind == SIGNING_KEY_KIND))
        report = ledger_service.verify(session, public)
        return VerifyOut(**report.as_dict(), public_key_fingerprint=ledger_crypto.fingerprint(public) if public else None)
