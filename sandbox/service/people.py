"""People signing in to the web console: password links, argon2 password hashes, lockout, session generations.

Programs keep using bearer tokens (``sandbox.service.auth``); nothing here touches them.

- A password is set only through a one-time link the admin issues: its token is shown once and stored
  only as a SHA-256, it expires, and it works once. A new link voids the user's earlier unused ones.
- Passwords are stored as argon2id hashes (argon2-cffi's RFC 9106 defaults): a copy of the database
  yields no password without a costly search per user.
- Failed sign-ins are counted per login name, whether the name exists or not, and lock that name for a
  while after ``max_failures``: guessing is slow, and the answers (wrong, locked) are the same for a
  name that has no account, so that the console never tells who has one. An unknown name is checked
  against a dummy hash, so that it takes as long as a known one.
- Each console session carries its user's ``session_generation``; "sign out everywhere" and a new
  password increase it, which ends every older session at once.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationFailed
from sandbox.models import PasswordLink, SigninFailures, User
from sandbox.service.ledger import Ledger

LOGIN_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# Longer inputs are refused before hashing: argon2 takes any length, a megabyte password costs time.
MAX_PASSWORD_LENGTH = 256


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106's low-memory profile (64 MiB, 3 passes, 4 lanes)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches in practice: an unknown login is verified against it, for equal timing."""
    return _hasher().hash(secrets.token_urlsafe(32))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def link_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def login_key(login: str) -> str:
    """The lockout's key for a login name as typed (trimmed, case-folded), known or not."""
    return hashlib.sha256(login.strip().casefold().encode("utf-8")).hexdigest()


def check_login(login: str) -> str:
    if not LOGIN_PATTERN.fullmatch(login):
        raise ValidationFailed(
            "a login is 2 to 64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            details={"field": "login"},
        )
    return login


def issue_link(session: Session, ledger: Ledger, actor: str, user_id: str, login: str, lifetime: timedelta) -> tuple[PasswordLink, str]:
    """A one-time link token for ``user_id`` (shown once), who will sign in as ``login``."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    check_login(login)
    holder = session.scalar(select(User.id).where(User.login == login))
    if holder is not None and holder != user.id:
        raise Conflict(f"the login {login!r} belongs to another user", details={"field": "login"})
    now = datetime.now(UTC)
    for earlier in session.scalars(select(PasswordLink).where(PasswordLink.user_id == user.id, PasswordLink.used_at.is_(None))):
        earlier.expires_at = min(earlier.expires_at, now)
    user.login = login
    token = secrets.token_urlsafe(32)
    link = PasswordLink(user_id=user.id, token_hash=link_hash(token), created_at=now, expires_at=now + lifetime)
    session.add(link)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="user.password_link",
        object_type="user",
        object_id=user.id,
        details={"link_id": link.id, "login": login, "expires_at": link.expires_at.isoformat()},
    )
    return link, token


def open_link(session: Session, token: str, lock: bool = False) -> PasswordLink:
    """The link of ``token`` if it is still usable; unknown, used and expired links are one error alike.

    ``lock`` takes the link's row until the transaction ends (PostgreSQL; SQLite's writer already holds
    its lock): two uses of one link at once are one after the other, and the second finds it used.
    """
    query = select(PasswordLink).where(PasswordLink.token_hash == link_hash(token))
    if lock:
        query = query.with_for_update(of=PasswordLink).execution_options(populate_existing=True)
    link = session.scalar(query)
    if link is None or link.used_at is not None or link.expires_at <= datetime.now(UTC):
        raise NotFound("this link is unknown, used or expired")
    return link


def check_password(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise ValidationFailed(f"a password has at least {min_length} characters", details={"field": "password", "min": min_length})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", details={"field": "password", "max": MAX_PASSWORD_LENGTH}
        )


def set_password(session: Session, ledger: Ledger, token: str, password: str, min_length: int) -> User:
    """Use the link: store the password's hash, end the user's sessions, lift the login's lockout."""
    link = open_link(session, token, lock=True)
    check_password(password, min_length)
    user = link.user
    link.used_at = datetime.now(UTC)
    _store(session, ledger, user, password, actor=user.id, source="link")
    return user


def set_demo_password(session: Session, ledger: Ledger, actor: str, user: User, login: str, password: str) -> None:
    """The demo's people get a password without a link (``sandbox.demo.passwords``)."""
    check_login(login)
    holder = session.scalar(select(User.id).where(User.login == login))
    if holder is not None and holder != user.id:
        raise Conflict(f"the login {login!r} belongs to another user", details={"field": "login"})
    user.login = login
    _store(session, ledger, user, password, actor=actor, source="demo")


def _store(session: Session, ledger: Ledger, user: User, password: str, actor: str, source: str) -> None:
    user.password_hash = hash_password(password)
    user.session_generation += 1
    if user.login is not None:
        failures = session.get(SigninFailures, login_key(user.login))
        if failures is not None:
            session.delete(failures)
    ledger.append(session, actor=actor, action="user.password_set", object_type="user", object_id=user.id, details={"source": source})


@dataclass(frozen=True)
class SigninResult:
    """A sign-in's outcome: the user, or why not (``locked_until`` set while the login is locked)."""

    user: User | None
    locked_until: datetime | None = None


def sign_in(session: Session, ledger: Ledger, login: str, password: str, max_failures: int, lockout: timedelta) -> SigninResult:
    """Check a login and password, counting failures per login name (existing or not) and locking it after ``max_failures``."""
    now = datetime.now(UTC)
    key = login_key(login)
    failures = session.get(SigninFailures, key, with_for_update=True)
    if failures is not None and failures.locked_until is not None and failures.locked_until > now:
        return SigninResult(None, failures.locked_until)
    user = session.scalar(select(User).where(User.login == login.strip().casefold())) if len(password) <= MAX_PASSWORD_LENGTH else None
    if password_matches(user.password_hash if user else None, password[:MAX_PASSWORD_LENGTH]) and user is not None:
        if failures is not None:
            session.delete(failures)
        if _hasher().check_needs_rehash(user.password_hash or ""):
            user.password_hash = hash_password(password)
        ledger.append(session, actor=user.id, action="session.sign_in", object_type="user", object_id=user.id, details={})
        return SigninResult(user)
    if failures is None:
        failures = SigninFailures(login_key=key, failures=0)
        session.add(failures)
    failures.failures += 1
    failures.updated_at = now
    if failures.failures >= max_failures:
        failures.failures, failures.locked_until = 0, now + lockout
        return SigninResult(None, failures.locked_until)
    failures.locked_until = None
    return SigninResult(None)


def sign_out_everywhere(session: Session, ledger: Ledger, user_id: str) -> None:
    """End every console session of the user (API tokens are untouched: programs keep working)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    user.session_generation += 1
    ledger.append(session, actor=user.id, action="session.sign_out_everywhere", object_type="user", object_id=user.id, details={})


def session_user(session: Session, user_id: str, generation: int) -> User | None:
    """The user a console session names, if that session's generation is still the user's."""
    user = session.get(User, user_id)
    if user is None or user.session_generation != generation or user.password_hash is None:
        return None
    return user
