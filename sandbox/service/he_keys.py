"""The Paillier public keys the domain accepts (table ``he_keys``): the key custodian's, registered by the operator.

Only public keys live here. A provider encrypts under one of them; ingest accepts a ``paillier``
column only under a registered key; an ``he`` job's release decision names it to the custodian.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.paillier import PublicKey
from sandbox.models import HEKey
from sandbox.service.ledger import Ledger


def register(session: Session, ledger: Ledger, actor: str, key: PublicKey, source: str) -> tuple[HEKey, bool]:
    """Store the key unless it is there already; (row, created now). On the ledger when new."""
    row = session.get(HEKey, key.fingerprint)
    if row is not None:
        return row, False
    row = HEKey(fingerprint=key.fingerprint, n=str(key.n), bits=key.bits, source=source[:500])
    session.add(row)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="he.key.register",
        object_type="he_key",
        object_id=key.fingerprint,
        details={"bits": key.bits, "source": source[:500]},
    )
    return row, True


def all_keys(session: Session) -> list[HEKey]:
    return list(session.scalars(select(HEKey).order_by(HEKey.created_at)))


def public_keys(session: Session, fingerprints: Iterable[str]) -> dict[str, PublicKey]:
    """The registered keys among ``fingerprints``; unknown ones are simply absent."""
    wanted = set(fingerprints)
    if not wanted:
        return {}
    rows = session.scalars(select(HEKey).where(HEKey.fingerprint.in_(wanted)))
    return {row.fingerprint: public_key(row) for row in rows}


def public_key(row: HEKey) -> PublicKey:
    return PublicKey(int(row.n))
