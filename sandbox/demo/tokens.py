"""The demo's tokens file, ``<instance>/demo-tokens.env``: one ``export NAME=token`` line per demo user.

``python -m sandbox init --demo`` (``make run``) writes it and the README tour sources it, so the
tokens never need copying from a terminal. Tokens stay valid across runs: a token read back from the
file is kept as long as it still authenticates as its user; only a missing, edited or revoked one is
replaced (see ``ensure``). Only token hashes are in the database, so this file is the one place the
demo tokens exist in clear: it is created with mode 0600 (the threat: another local user reading an
admin token), written under a temporary name and renamed, so it is never readable by others nor
half-written, even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.models import Token, User
from sandbox.service.auth import issue_token, token_hash
from sandbox.service.ledger import Ledger

FILE_NAME = "demo-tokens.env"
# The demo user's name -> the variable the tour uses. Order is the file's order.
VARIABLES = {"admin": "ADMIN", "steward": "STEWARD", "analyst": "ANALYST", "auditor": "AUDITOR", "auditor2": "AUDITOR2"}


def path_in(instance_path: str | Path) -> Path:
    return Path(instance_path) / FILE_NAME


def read(path: Path) -> dict[str, str]:
    """The tokens in ``path`` by demo user name; empty when there is no file. Unknown lines are ignored."""
    return read_exports(path, "")


def read_exports(path: Path, suffix: str) -> dict[str, str]:
    """The values of ``path``'s ``export <VARIABLE><suffix>=<value>`` lines, by demo user name (see ``VARIABLES``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    line_of = re.compile(rf"^export ([A-Z][A-Z0-9]*){re.escape(suffix)}=(.+)$")
    names = {variable: name for name, variable in VARIABLES.items()}
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = line_of.match(line.strip())
        if match and match.group(1) in names:
            values = shlex.split(match.group(2))
            if len(values) == 1:
                found[names[match.group(1)]] = values[0]
    return found


def write(path: Path, tokens: Mapping[str, str]) -> None:
    """Replace ``path`` with ``export`` lines for ``tokens`` (by user name), mode 0600 from the first byte."""
    header = [
        "# Demo tokens of this instance, written by `python -m sandbox init --demo`. Secret: mode 0600.",
        "# Use: source this file; the tokens stay valid when `make run` runs again (see README).",
    ]
    write_exports(path, header, tokens, "")


def write_exports(path: Path, header: list[str], values: Mapping[str, str], suffix: str) -> None:
    """Replace ``path`` with ``header`` and an ``export <VARIABLE><suffix>=<value>`` line per demo user in ``values``."""
    lines = header + [f"export {variable}{suffix}={shlex.quote(values[name])}" for name, variable in VARIABLES.items() if name in values]
    write_private(path, lines)


def write_private(path: Path, lines: list[str]) -> None:
    """Replace ``path`` with ``lines``, mode 0600 from the first byte, never half-written."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{FILE_NAME}.", suffix=".tmp")  # O_EXCL, mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def ensure(session: Session, ledger: Ledger, actor: str, users: Mapping[str, User], known: Mapping[str, str]) -> dict[str, str]:
    """A valid token for each of ``users`` (by name): the ``known`` one if it still authenticates as that user, else a new one.

    A new token for a demo user revokes that user's earlier tokens (they were in a file that is gone
    or no longer matches). The admin's other tokens are left alone: the operator may use them elsewhere
    (``SANDBOX_ADMIN_TOKEN``, tokens made through the API).
    """
    tokens: dict[str, str] = {}
    for name, user in users.items():
        token = known.get(name)
        if token is not None and _authenticates(session, token, user):
            tokens[name] = token
            continue
        if name != "admin":
            _revoke_all(session, ledger, actor, user)
        row, tokens[name] = issue_token(session, user)
        ledger.append(
            session,
            actor=actor,
            action="token.issue",
            object_type="token",
            object_id=row.id,
            details={"user_id": user.id, "source": "demo"},
        )
    return tokens


def _authenticates(session: Session, token: str, user: User) -> bool:
    row = session.scalar(select(Token).where(Token.token_hash == token_hash(token)))
    return row is not None and row.revoked_at is None and row.user_id == user.id


def _revoke_all(session: Session, ledger: Ledger, actor: str, user: User) -> None:
    now = datetime.now(UTC)
    for old in session.scalars(select(Token).where(Token.user_id == user.id, Token.revoked_at.is_(None))):
        old.revoked_at = now
        ledger.append(
            session,
            actor=actor,
            action="token.revoke",
            object_type="token",
            object_id=old.id,
            details={"user_id": user.id, "reason": "demo token replaced"},
        )
