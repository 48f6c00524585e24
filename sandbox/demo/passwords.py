"""The demo people's console passwords, ``<instance>/demo-passwords.env``: one ``export NAME_PASSWORD=...`` line each.

Like the demo tokens (``sandbox.demo.tokens``): ``python -m sandbox init --demo`` (``make run``) writes
the file (mode 0600, the one place the passwords exist in clear; the database keeps argon2 hashes),
and a password read back from it is kept as long as it still signs its person in; a missing or edited
one is replaced by a new random password. Each demo person signs in with their demo name as login
(``admin``, ``steward``, ``analyst``, ``auditor``, ``auditor2``). A real deployment sets passwords only through the
admin's one-time links (``POST /api/v1/users/{id}/password-link``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.values import Role
from sandbox.app import get_ledger_of
from sandbox.db import get_db_of
from sandbox.demo import seed
from sandbox.demo.tokens import read_exports, write_exports
from sandbox.models import Org, User
from sandbox.service import people
from sandbox.service.ledger import Ledger

FILE_NAME = "demo-passwords.env"
SUFFIX = "_PASSWORD"


def path_in(instance_path: str | Path) -> Path:
    return Path(instance_path) / FILE_NAME


def read(path: Path) -> dict[str, str]:
    """The passwords in ``path`` by demo user name; empty when there is no file."""
    return read_exports(path, SUFFIX)


def write(path: Path, passwords: Mapping[str, str]) -> None:
    header = [
        "# Demo console passwords of this instance, written by `python -m sandbox init --demo`. Secret: mode 0600.",
        "# Sign in at the site root with the login in the variable's name (ANALYST_PASSWORD: login analyst).",
    ]
    write_exports(path, header, passwords, SUFFIX)


def ensure(session: Session, ledger: Ledger, actor: str, users: Mapping[str, User], known: Mapping[str, str]) -> dict[str, str]:
    """A working password for each of ``users`` (by name, who is also the login): the ``known`` one while it still matches."""
    passwords: dict[str, str] = {}
    for name, user in users.items():
        password = known.get(name)
        if password is not None and user.login == name and people.password_matches(user.password_hash, password):
            passwords[name] = password
            continue
        passwords[name] = secrets.token_urlsafe(12)
        people.set_demo_password(session, ledger, actor, user, name, passwords[name])
    return passwords


def load(app: Flask, actor: str, known: Mapping[str, str]) -> dict[str, str]:
    """Passwords for the admin and the demo people of ``seed.load`` (which must have run), by name."""
    db, ledger = get_db_of(app), get_ledger_of(app)
    with db.writing() as session:
        users: dict[str, User] = {}
        admin = session.scalar(select(User).where(User.role == Role.ADMIN.value).order_by(User.created_at))
        assert admin is not None, "initialise() creates the admin first"
        users["admin"] = admin
        for name, org_index, _role in seed.USERS:
            org = session.scalar(select(Org).where(Org.name == seed.ORGS[org_index][0]))
            user = session.scalar(select(User).where(User.name == name, User.org_id == (org.id if org else None)))
            assert user is not None, "seed.load() creates the demo people first"
            users[name] = user
        return ensure(session, ledger, actor, users, known)
