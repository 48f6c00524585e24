"""Creating an instance: folder, master key, schema, signing key, operator organisation and admin.

Idempotent, so that ``python -m sandbox init`` can run on every start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from core.values import OrgKind, Role
from sandbox import keys, migrate
from sandbox.app import get_ledger_of
from sandbox.db import get_db_of
from sandbox.models import Org, Token, User
from sandbox.service import identity
from sandbox.service.auth import issue_token, token_hash

SYSTEM = "system:cli"
OPERATOR_ORG = "Domain operator"


@dataclass(frozen=True)
class Initialised:
    admin_id: str
    admin_token: str | None  # set when a new admin token was issued


def initialise(app: Flask, admin_token: str | None = None) -> Initialised:
    Path(app.config["INSTANCE_PATH"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    store = keys.get_keys_of(app)
    if not store.exists():
        store.create()
    db = get_db_of(app)
    migrate.upgrade(db.engine)
    ledger = get_ledger_of(app)
    with db.writing() as session:
        keys.ensure_signing_key(session, store)
        org = session.scalar(select(Org).where(Org.kind == OrgKind.OPERATOR.value))
        if org is None:
            org = Org(name=OPERATOR_ORG, kind=OrgKind.OPERATOR.value)
            session.add(org)
            session.flush()
            ledger.append(
                session,
                actor=SYSTEM,
                action="org.create",
                object_type="org",
                object_id=org.id,
                details={"name": org.name, "kind": org.kind},
            )
        admin = session.scalar(select(User).where(User.org_id == org.id, User.role == Role.ADMIN.value))
        if admin is None:
            admin, _, token = identity.create_user(session, ledger, SYSTEM, "admin", org.id, Role.ADMIN, admin_token)
            return Initialised(admin.id, token)
        if admin_token and session.scalar(select(Token.id).where(Token.token_hash == token_hash(admin_token))) is None:
            row, token = issue_token(session, admin, admin_token)
            ledger.append(
                session,
                actor=SYSTEM,
                action="token.issue",
                object_type="token",
                object_id=row.id,
                details={"user_id": admin.id, "source": "SANDBOX_ADMIN_TOKEN"},
            )
            return Initialised(admin.id, token)
        return Initialised(admin.id, None)
