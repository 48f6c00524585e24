"""Bearer tokens and the caller's identity.

Tokens are 256-bit random strings shown once; the database keeps only their SHA-256, so a copy
of the database cannot be used to call the API. Comparison happens by hash lookup, never by
comparing secrets in Python.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Unauthenticated
from core.values import OrgKind, Role
from sandbox.models import Token, User

TOKEN_PREFIX = "sbx_"  # noqa: S105 - a public prefix that makes leaked tokens easy to scan for, not a secret


@dataclass(frozen=True)
class Principal:
    user_id: str
    name: str
    role: Role
    org_id: str
    org_kind: OrgKind

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.user_id,
            "name": self.name,
            "role": self.role.value,
            "org_id": self.org_id,
            "org_kind": self.org_kind.value,
        }


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User, token: str | None = None) -> tuple[Token, str]:
    """Store a token's hash for ``user``; returns the row and the token (to show once)."""
    token = token or new_token()
    row = Token(user_id=user.id, token_hash=token_hash(token), hint=token[:8])
    session.add(row)
    session.flush()
    return row, token


def principal_of(user: User) -> Principal:
    return Principal(user.id, user.name, Role(user.role), user.org_id, OrgKind(user.org.kind))


def authenticate(session: Session, header: str) -> Principal:
    """The caller named by an ``Authorization: Bearer <token>`` header value (empty if absent)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    row = session.scalar(select(Token).where(Token.token_hash == token_hash(token.strip())))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked token")
    return principal_of(row.user)
