"""Sessions for people: sign in, sign out (here or everywhere), set a password through a one-time link.

The session is Flask's signed cookie holding the user's id and session generation only; each request
checks both against the database (``people.session_user``), so that signing out everywhere or a new
password ends every older session at once. The cookie is HttpOnly, SameSite=Lax and Secure on HTTPS.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Request, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import format_datetime
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from core.errors import NotFound, ValidationFailed
from core.values import Role
from sandbox.api.services import ledger
from sandbox.db import read_session, writing
from sandbox.service import people
from sandbox.service.auth import Principal, principal_of

SECRET_FILE = "console-secret.key"  # noqa: S105 - the file's name, not a secret


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure on every HTTPS request even when the setting is off."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (bool(request) and request.is_secure)


def configure_sessions(app: Flask) -> None:
    app.session_interface = SessionInterface()
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    if not isinstance(lifetime, timedelta):
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=int(lifetime))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(Path(app.config["INSTANCE_PATH"]) / SECRET_FILE)


def _instance_secret(path: Path) -> str:
    """The instance's session-signing key, made once (mode 0600): whoever reads it can forge sessions.

    Written under a temporary name and linked into place, so that two workers starting together agree
    on one key and neither reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker made it first: use theirs
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:  # a copy or a restore may have left it readable by others
        os.chmod(path, 0o600)
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it, and a new key is made at the next start")
    return secret


def current_person() -> Principal | None:
    """The signed-in person of this request, or None (no session, or a session that was ended)."""
    if "person" not in g:
        user_id, generation = session.get("uid"), session.get("gen")
        user = None
        if isinstance(user_id, str) and isinstance(generation, int):
            user = people.session_user(read_session(), user_id, generation)
        g.person = principal_of(user) if user is not None else None
    found: Principal | None = g.person
    return found


def signed_in(*roles: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Views for signed-in people (of ``roles``, if given): others go to the sign-in page, or get 403."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            person = current_person()
            if person is None:
                target = url_for("console.sign_in", next=request.full_path.rstrip("?"))
                if request.headers.get("HX-Request"):
                    return Response(status=401, headers={"HX-Redirect": target})
                return redirect(target)
            if roles and person.role not in roles:
                abort(403)
            return view(person=person, **kwargs)

        return wrapper

    return decorate


def safe_next(value: str | None) -> str:
    """A local path to go back to; anything else (another site, ``//host``, a scheme) is the home page.

    Whitespace and control characters are refused too: browsers drop a tab or a line break inside a URL,
    so ``/<tab>/evil.example`` would leave the site as ``//evil.example`` (and a line break cannot be a header).
    """
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        return url_for("console.home")
    parts = urlsplit(value)
    if value.startswith("/") and not value.startswith("//") and "\\" not in value and not parts.scheme and not parts.netloc:
        return value
    return url_for("console.home")


def register(bp: Blueprint) -> None:
    @bp.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        next_path = safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("sign_in.html", next=next_path, login="")
        login, password = request.form.get("login", ""), request.form.get("password", "")
        result, user_id, generation = _attempt(login, password)
        if result.user is None:
            if result.locked_until is not None:
                message = _("Too many failed attempts for this login. Try again after %(time)s.", time=format_datetime(result.locked_until))
            else:
                message = _("The login or the password is wrong.")
            return render_template("sign_in.html", next=next_path, login=login, error=message), 401
        session.clear()
        session.permanent = True
        session["uid"], session["gen"] = user_id, generation
        return redirect(next_path)

    @bp.route("/sign-out", methods=["POST"])
    def sign_out() -> Response:
        session.clear()
        flash(_("You are signed out."))
        return redirect(url_for("console.sign_in"))

    @bp.route("/sign-out-everywhere", methods=["POST"])
    @signed_in()
    def sign_out_everywhere(person: Principal) -> Response:
        with writing() as db:
            people.sign_out_everywhere(db, ledger(), person.user_id)
        session.clear()
        flash(_("You are signed out on every device. API tokens keep working."))
        return redirect(url_for("console.sign_in"))

    @bp.route("/set-password/<token>", methods=["GET", "POST"])
    def set_password(token: str) -> Any:
        minimum = int(current_app.config["CONSOLE_MIN_PASSWORD_LENGTH"])
        try:
            link = people.open_link(read_session(), token)
        except NotFound:
            return render_template("link_invalid.html"), 404
        if request.method == "GET":
            return render_template("set_password.html", login=link.user.login, minimum=minimum)
        password, again = request.form.get("password", ""), request.form.get("again", "")
        error = _password_error(password, again, minimum)
        if error is None:
            try:
                with writing() as db:
                    people.set_password(db, ledger(), token, password, minimum)
            except NotFound:
                return render_template("link_invalid.html"), 404
            session.clear()
            flash(_("Your password is set. Sign in with it."))
            return redirect(url_for("console.sign_in"))
        return render_template("set_password.html", login=link.user.login, minimum=minimum, error=error), 400


def _attempt(login: str, password: str) -> tuple[people.SigninResult, str, int]:
    """One sign-in attempt in its own transaction. Two first failures of one login name at once may both
    try to create its failure count (PostgreSQL): the loser retries once, and then finds the row."""
    config = current_app.config
    max_failures, lockout = int(config["CONSOLE_MAX_FAILED_SIGNINS"]), timedelta(seconds=int(config["CONSOLE_LOCKOUT_SECONDS"]))
    for attempt in range(2):
        try:
            with writing() as db:
                result = people.sign_in(db, ledger(), login, password, max_failures, lockout)
                if result.user is None:
                    return result, "", 0
                return result, result.user.id, result.user.session_generation
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _password_error(password: str, again: str, minimum: int) -> str | None:
    if password != again:
        return str(_("The two passwords differ."))
    try:
        people.check_password(password, minimum)
    except ValidationFailed as exc:
        if "min" in exc.details:
            return str(_("A password has at least %(n)d characters.", n=minimum))
        return str(_("A password has at most %(n)d characters.", n=people.MAX_PASSWORD_LENGTH))
    return None


def is_htmx(req: Request) -> bool:
    return req.headers.get("HX-Request") == "true"
