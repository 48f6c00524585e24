"""Languages: zh-CN by default, English on request; every string, date and number through Flask-Babel.

The language is ``?lang=`` for one request, else the ``lang`` cookie that the language form sets
(a POST with its CSRF token), else Chinese. Names of statuses, roles and levels are translated
here, once, from the enums they label.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Flask, make_response, redirect, request
from flask_babel import Babel, format_datetime, format_decimal
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from core.values import ColumnRole, ColumnType, GrantStatus, JobKind, JobStatus, OrgKind, Role
from policies.model import ColumnUse
from sandbox.console.signin import safe_next

LANGUAGES = {"zh_CN": "中文", "en": "English"}  # each language's name in itself, as switches show them
DEFAULT = "zh_CN"
# The language codes of forms, cookies and ``?lang=`` -> Babel's locales (Babel spells simplified Chinese
# of China ``zh_Hans_CN``, and so are its catalogue's folder and its date and number formats named).
LOCALES = {"zh_CN": "zh_Hans_CN", "en": "en"}
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
COOKIE = "lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

STATUS_LABELS = {
    JobStatus.QUEUED: _l("queued"),
    JobStatus.RUNNING: _l("running"),
    JobStatus.CHECKING: _l("checking the output"),
    JobStatus.RELEASED: _l("released"),
    JobStatus.HELD: _l("held for review"),
    JobStatus.BLOCKED: _l("blocked"),
    JobStatus.REJECTED: _l("rejected"),
    JobStatus.FAILED: _l("failed"),
    JobStatus.CANCELLED: _l("cancelled"),
}
ROLE_LABELS = {Role.ADMIN: _l("administrator"), Role.STEWARD: _l("data steward"), Role.ANALYST: _l("analyst"), Role.AUDITOR: _l("auditor")}
COLUMN_ROLE_LABELS = {
    ColumnRole.IDENTIFIER: _l("identifier"),
    ColumnRole.QUASI_IDENTIFIER: _l("quasi-identifier"),
    ColumnRole.SENSITIVE: _l("sensitive"),
    ColumnRole.ATTRIBUTE: _l("attribute"),
}
COLUMN_TYPE_LABELS = {
    ColumnType.INT: _l("integer"),
    ColumnType.FLOAT: _l("decimal number"),
    ColumnType.STRING: _l("text"),
    ColumnType.BOOL: _l("yes/no"),
    ColumnType.DATE: _l("date"),
    ColumnType.PAILLIER: _l("encrypted number (Paillier)"),
}
JOB_KIND_LABELS = {
    JobKind.QUERY: _l("SQL query"),
    JobKind.STATS: _l("statistics"),
    JobKind.SCRIPT: _l("script"),
    JobKind.HE: _l("homomorphic"),
}
GRANT_STATUS_LABELS = {
    GrantStatus.REQUESTED: _l("requested"),
    GrantStatus.APPROVED: _l("approved"),
    GrantStatus.REJECTED: _l("rejected"),
    GrantStatus.REVOKED: _l("revoked"),
    GrantStatus.EXPIRED: _l("expired"),
}
COLUMN_USE_LABELS = {
    ColumnUse.DENY: _l("not usable"),
    ColumnUse.JOIN_KEY: _l("join key only"),
    ColumnUse.DIMENSION: _l("dimension (filter, group by)"),
    ColumnUse.MEASURE: _l("measure (inside aggregates)"),
    ColumnUse.PLAIN: _l("plain (may be output)"),
}
ORG_KIND_LABELS = {
    OrgKind.OPERATOR: _l("operator"),
    OrgKind.BUREAU: _l("data bureau"),
    OrgKind.ENTERPRISE: _l("enterprise"),
    OrgKind.AUDIT: _l("audit office"),
}
LABELS: dict[str, Mapping[Any, Any]] = {
    "status": STATUS_LABELS,
    "role": ROLE_LABELS,
    "column_role": COLUMN_ROLE_LABELS,
    "column_type": COLUMN_TYPE_LABELS,
    "job_kind": JOB_KIND_LABELS,
    "grant_status": GRANT_STATUS_LABELS,
    "column_use": COLUMN_USE_LABELS,
    "org_kind": ORG_KIND_LABELS,
}


def language() -> str:
    """This request's language code: ``?lang=``, else the cookie, else Chinese."""
    for candidate in (request.args.get("lang"), request.cookies.get(COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT


def choose() -> str:
    return LOCALES[language()]


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=choose, default_translation_directories=str(TRANSLATIONS))
    app.jinja_env.filters.update(when=_when, number=_number, label=_label)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, HTML_LANG=HTML_LANG, current_language=language)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else format_datetime(moment, "medium")


def _number(value: float | int | None) -> str:
    return "" if value is None else format_decimal(value)


def _label(value: Any, kind: str) -> str:
    """An enum value's translated name (``{{ job.status | label('status') }}``); an unknown value as it is."""
    found = LABELS[kind].get(value)
    return str(found) if found is not None else str(value)


def register(bp: Blueprint) -> None:
    @bp.route("/language", methods=["POST"], endpoint="language")
    def switch_language() -> Response:
        chosen = request.form.get("lang", "")
        response = make_response(redirect(_without_lang(safe_next(request.form.get("next")))))
        if chosen in LANGUAGES:
            response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="Lax", secure=request.is_secure, path="/")
        return response


def _without_lang(path: str) -> str:
    """``path`` without a ``lang`` parameter, which would otherwise override the language just chosen."""
    parts = urlsplit(path)
    query = urlencode([(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "lang"])
    return urlunsplit(("", "", parts.path, query, ""))
