"""Consent lists of scoring grants: which entities agreed to be scored under a grant, until when.

The steward of the grant's bureau registers and revokes consents (the bureau holds the consent
records; the enterprise that scores cannot add any). A consent is *current* while it is not revoked
and its ``valid_until`` lies in the future; only entities with a current consent are ever scored
(``sandbox.runtime.he_score``). Each entity has at most one unrevoked row per grant: registering it again
replaces its ``valid_until`` (renewing or shortening it); a revoked row stays as history, and a later
registration adds a new row.

Entity identifiers are personal or enterprise identifiers (ID numbers, 统一社会信用代码). They are
shown to the bureau's stewards and to auditors only; the enterprise owning the grant sees counts.
The ledger records counts and ``entities_sha256``, the SHA-256 of the sorted distinct list (as
canonical JSON), never an identifier: whoever holds the list can check it against the ledger. For
a list of one or a few entities the digest is as guessable as the identifiers themselves, which is
why it is no secret kept from auditors, who may read the list anyway.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, Forbidden, ValidationFailed
from core.values import GrantStatus, Role
from sandbox.models import Consent, Grant
from sandbox.service.auth import Principal
from sandbox.service.grants import effective_status, get_visible
from sandbox.service.ledger import Ledger

MAX_ENTITIES_PER_REQUEST = 100_000
CHUNK = 500  # identifiers per IN (...) list: well under every backend's parameter limit
T = TypeVar("T")


class ConsentStatus(StrEnum):
    ACTIVE = "active"  # current: not revoked, valid_until in the future
    EXPIRED = "expired"  # not revoked, but valid_until has passed
    REVOKED = "revoked"  # revoked by a steward (and not registered again since)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def entities_digest(entities: Iterable[str]) -> str:
    """SHA-256 of the sorted distinct identifiers as canonical JSON: what the ledger records instead of them."""
    text = json.dumps(sorted(set(entities)), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def current(session: Session, grant_id: str, entities: Sequence[str], now: datetime) -> set[str]:
    """Which of ``entities`` have a current consent under the grant."""
    found: set[str] = set()
    for part in chunks(entities):
        found.update(
            session.scalars(
                select(Consent.entity).where(
                    Consent.grant_id == grant_id, Consent.entity.in_(part), Consent.revoked_at.is_(None), Consent.valid_until > now
                )
            )
        )
    return found


def _stewarded(session: Session, caller: Principal, grant_id: str) -> Grant:
    """The grant, locked: changes to its consents serialise with each other and with releasing scores."""
    visible = get_visible(session, caller, grant_id)
    if caller.role is not Role.STEWARD:
        raise Forbidden("only a steward of the grant's bureau keeps its consent list")
    grant = session.scalar(select(Grant).where(Grant.id == visible.id).with_for_update().execution_options(populate_existing=True))
    assert grant is not None
    return grant


def _unrevoked(session: Session, grant_id: str, entities: Sequence[str]) -> dict[str, list[Consent]]:
    rows: dict[str, list[Consent]] = {}
    for part in chunks(entities):
        for row in session.scalars(
            select(Consent).where(Consent.grant_id == grant_id, Consent.entity.in_(part), Consent.revoked_at.is_(None))
        ):
            rows.setdefault(row.entity, []).append(row)
    return rows


def register(
    session: Session, ledger: Ledger, caller: Principal, grant_id: str, entities: Sequence[str], valid_until: datetime
) -> dict[str, Any]:
    """Record consents until ``valid_until`` (in the future); duplicates in the list count once."""
    grant = _stewarded(session, caller, grant_id)
    status = effective_status(grant)
    if status not in (GrantStatus.REQUESTED, GrantStatus.APPROVED):
        raise Conflict(f"the grant is {status.value}; consents are kept for requested or approved grants", details={"status": status.value})
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if valid_until <= now:
        raise ValidationFailed("valid_until must lie in the future", details={"field": "valid_until"})
    distinct = sorted(set(entities))
    existing = _unrevoked(session, grant.id, distinct)
    for entity in distinct:
        for row in existing.get(entity, []):
            row.valid_until = valid_until
        if entity not in existing:
            session.add(Consent(grant_id=grant.id, entity=entity, valid_until=valid_until, registered_by=caller.user_id))
    details = {
        "entities": len(distinct),
        "registered": len(distinct) - len(existing),
        "renewed": len(existing),
        "valid_until": valid_until.isoformat(),
        "entities_sha256": entities_digest(distinct),
    }
    ledger.append(session, actor=caller.user_id, action="consent.register", object_type="grant", object_id=grant.id, details=details)
    return {"grant_id": grant.id, **details}


def revoke(session: Session, ledger: Ledger, caller: Principal, grant_id: str, entities: Sequence[str]) -> dict[str, Any]:
    """Revoke the current or expired consents of ``entities``; revoking takes effect on every job not yet released."""
    grant = _stewarded(session, caller, grant_id)
    distinct = sorted(set(entities))
    existing = _unrevoked(session, grant.id, distinct)
    now = datetime.now(UTC)
    for rows in existing.values():
        for row in rows:
            row.revoked_at, row.revoked_by = now, caller.user_id
    details = {
        "entities": len(distinct),
        "revoked": len(existing),
        "without_consent": len(distinct) - len(existing),
        "entities_sha256": entities_digest(distinct),
    }
    ledger.append(session, actor=caller.user_id, action="consent.revoke", object_type="grant", object_id=grant.id, details=details)
    return {"grant_id": grant.id, **details}


def counts(session: Session, grant_id: str, now: datetime) -> dict[str, int]:
    """Entities per status: active and expired from the unrevoked rows, revoked from the rest."""
    live = and_(Consent.grant_id == grant_id, Consent.revoked_at.is_(None))
    active = session.scalar(select(func.count(func.distinct(Consent.entity))).where(live, Consent.valid_until > now)) or 0
    expired = session.scalar(select(func.count(func.distinct(Consent.entity))).where(live, Consent.valid_until <= now)) or 0
    unrevoked = select(Consent.entity).where(live)
    revoked = (
        session.scalar(
            select(func.count(func.distinct(Consent.entity))).where(
                Consent.grant_id == grant_id, Consent.revoked_at.is_not(None), Consent.entity.not_in(unrevoked)
            )
        )
        or 0
    )
    return {ConsentStatus.ACTIVE.value: active, ConsentStatus.EXPIRED.value: expired, ConsentStatus.REVOKED.value: revoked}


def view(session: Session, ledger: Ledger, caller: Principal, grant_id: str, after: str | None, limit: int) -> dict[str, Any]:
    """The consent list: counts for the enterprise owning the grant; each entity's status for the bureau and auditors.

    The bureau's stewards and auditors page through entities in identifier order (``after``: the
    last entity seen). Showing identifiers is on the ledger (how many, never which).
    """
    grant = get_visible(session, caller, grant_id)
    now = datetime.now(UTC)
    answer: dict[str, Any] = {"grant_id": grant.id, "counts": counts(session, grant.id, now), "items": None, "next_after": None}
    if caller.role is Role.ANALYST:
        return answer
    query = select(Consent.entity).where(Consent.grant_id == grant.id).distinct().order_by(Consent.entity).limit(limit)
    if after is not None:
        query = query.where(Consent.entity > after)
    page = list(session.scalars(query))
    rows: dict[str, list[Consent]] = {}
    for part in chunks(page):
        for row in session.scalars(select(Consent).where(Consent.grant_id == grant.id, Consent.entity.in_(part))):
            rows.setdefault(row.entity, []).append(row)
    answer["items"] = [_item(entity, rows[entity], now) for entity in page]
    answer["next_after"] = page[-1] if len(page) == limit else None
    ledger.append(
        session, actor=caller.user_id, action="consent.view", object_type="grant", object_id=grant.id, details={"entities_shown": len(page)}
    )
    return answer


def _item(entity: str, rows: list[Consent], now: datetime) -> dict[str, Any]:
    """An entity's status from its rows: its unrevoked row if it has one, else its latest revoked row."""
    live = [r for r in rows if r.revoked_at is None]
    row = live[0] if live else max(rows, key=lambda r: r.revoked_at or r.created_at)
    if row.revoked_at is not None:
        status = ConsentStatus.REVOKED
    else:
        status = ConsentStatus.ACTIVE if row.valid_until > now else ConsentStatus.EXPIRED
    return {
        "entity": entity,
        "status": status.value,
        "valid_until": row.valid_until,
        "registered_at": row.created_at,
        "revoked_at": row.revoked_at,
    }
