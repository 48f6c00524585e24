"""The home page of each role, and the console's error pages (HTML, where the API answers JSON)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core.errors import SandboxError
from core.values import Role
from sandbox.console.signin import signed_in
from sandbox.logs import log_unexpected
from sandbox.service.auth import Principal

log = logging.getLogger(__name__)


def register(bp: Blueprint) -> None:
    @bp.route("/")
    @signed_in()
    def home(person: Principal) -> Any:
        if person.role is Role.ANALYST:
            return redirect(url_for("console.catalogue"))
        return render_template("home.html", person=person)


def register_errors(bp: Blueprint) -> None:
    """Errors of the console's own views as pages; errors anywhere else keep the API's JSON shape."""

    @bp.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        return _error(400, _("The form has expired or did not come from this site. Reload the page and try again."))

    @bp.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[str, int]:
        return _error(413, None)  # the app's own handler would answer the API's JSON

    @bp.errorhandler(SandboxError)
    def _sandbox(exc: SandboxError) -> tuple[str, int]:
        return _error(exc.status if exc.status < 500 else 500, None)

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int]:
        return _error(exc.code or 500, None)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[str, int]:
        log_unexpected(log, "console request", exc)
        return _error(500, None)


def _error(status: int, message: str | None) -> tuple[str, int]:
    """A page per status with a fixed, translated text: an error's own message may be in English or say too much."""
    texts = {
        400: _("The request could not be understood."),
        403: _("Your role may not open this page."),
        404: _("There is no such page, or it is not yours to see."),
        405: _("This page does not accept that kind of request."),
        413: _("The file or form is larger than this site accepts."),
    }
    return render_template("error.html", status=status, message=message or texts.get(status, _("Something went wrong."))), status
