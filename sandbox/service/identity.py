"""Organisations, users and tokens: the admin's work. Every change is on the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationFailed
from core.text import a
from core.values import ROLE_ORG_KINDS, OrgKind, Role
from sandbox.models import Org, Token, User
from sandbox.service.auth import issue_token
from sandbox.service.ledger import Ledger


def create_org(session: Session, ledger: Ledger, actor: str, name: str, kind: OrgKind) -> Org:
    if session.scalar(select(Org.id).where(Org.name == name)) is not None:
        raise Conflict(f"an organisation named {name!r} exists already", details={"field": "name"})
    org = Org(name=name, kind=kind.value)
    session.add(org)
    session.flush()
    ledger.append(
        session, actor=actor, action="org.create", object_type="org", object_id=org.id, details={"name": name, "kind": kind.value}
    )
    return org


def create_user(
    session: Session, ledger: Ledger, actor: str, name: str, org_id: str, role: Role, token: str | None = None
) -> tuple[User, Token, str]:
    org = session.get(Org, org_id)
    if org is None:
        raise NotFound("no such organisation", details={"field": "org_id"})
    kind = OrgKind(org.kind)
    if kind not in ROLE_ORG_KINDS[role]:
        allowed = ", ".join(sorted(k.value for k in ROLE_ORG_KINDS[role]))
        raise ValidationFailed(
            f"{a(role.value)} must belong to an organisation of kind {allowed}, not {kind.value}",
            details={"field": "role"},
        )
    user = User(name=name, org_id=org.id, role=role.value)
    session.add(user)
    session.flush()
    session.refresh(user)
    row, token = issue_token(session, user, token)
    ledger.append(
        session,
        actor=actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        details={"name": name, "org_id": org.id, "role": role.value},
    )
    ledger.append(session, actor=actor, action="token.issue", object_type="token", object_id=row.id, details={"user_id": user.id})
    return user, row, token


def new_token(session: Session, ledger: Ledger, actor: str, user_id: str) -> tuple[Token, str]:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    row, token = issue_token(session, user)
    ledger.append(session, actor=actor, action="token.issue", object_type="token", object_id=row.id, details={"user_id": user.id})
    return row, token


def tokens_of(session: Session, user_id: str) -> list[Token]:
    """A user's tokens, oldest first (revoked ones too)."""
    if session.get(User, user_id) is None:
        raise NotFound("no such user")
    return list(session.scalars(select(Token).where(Token.user_id == user_id).order_by(Token.created_at, Token.id)))


def revoke_token(session: Session, ledger: Ledger, actor: str, user_id: str, token_id: str) -> Token:
    row = session.get(Token, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        ledger.append(session, actor=actor, action="token.revoke", object_type="token", object_id=row.id, details={"user_id": user_id})
    return row
