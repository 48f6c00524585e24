"""The auditor's ledger browser: events page by page with filters, the verify badge, and a segment's export.

The events are ``sandbox.api.audit.event_page`` (what ``GET /api/v1/audit/events`` answers, with the
same filters), the badge ``verification`` (``GET /api/v1/audit/verify``), and the export ``segment``:
the events of a range as the API gives them with their signed checkpoints and the domain's public key,
which ``python -m sandbox audit verify-export`` checks without the database. The console's dates are
days in its time zone (``BABEL_DEFAULT_TIMEZONE``); an event's name is translated, its details shown as recorded.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask_babel import format_datetime, get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from core.errors import BadRequest
from core.values import Role
from sandbox.api.audit import MAX_EXPORT, event_page, segment, verification
from sandbox.api.schemas import EventsQuery
from sandbox.console.signin import signed_in
from sandbox.db import read_session
from sandbox.models import LedgerEvent
from sandbox.service.auth import Principal
from sandbox.service.validation import parse_model

PAGE = 50  # events a page

EVENT_LABELS = {
    "org.create": _l("organisation created"),
    "user.create": _l("user created"),
    "user.password_link": _l("password link issued"),
    "user.password_set": _l("password set"),
    "token.issue": _l("token issued"),
    "token.revoke": _l("token revoked"),
    "session.sign_in": _l("signed in"),
    "session.sign_out_everywhere": _l("signed out everywhere"),
    "dataset.create": _l("dataset uploaded"),
    "dataset.version.create": _l("dataset version added"),
    "dataset.epsilon_cap": _l("dataset ε cap set"),
    "grant.request": _l("grant requested"),
    "grant.approve": _l("grant approved"),
    "grant.reject": _l("grant rejected"),
    "grant.revoke": _l("grant revoked"),
    "policy.create": _l("policy version saved"),
    "consent.register": _l("consents registered"),
    "consent.revoke": _l("consents revoked"),
    "consent.view": _l("consents viewed"),
    "job.submit": _l("job submitted"),
    "job.refused": _l("job refused by the policy"),
    "job.running": _l("job started"),
    "job.retry": _l("job retried"),
    "job.checking": _l("output being checked"),
    "job.released": _l("output released"),
    "job.held": _l("output held for review"),
    "job.blocked": _l("output blocked"),
    "job.rejected": _l("output returned"),
    "job.failed": _l("job failed"),
    "job.cancelled": _l("job cancelled"),
    "job.cancel_requested": _l("job cancellation requested"),
    "review.view": _l("held output viewed"),
    "review.release": _l("reviewer released"),
    "review.reject": _l("reviewer returned"),
    "review.submitted": _l("blinded decision submitted"),
    "review.opened": _l("blinded decisions opened"),
    "budget.spend": _l("privacy budget spent"),
    "score.use": _l("scores used"),
    "he.key.register": _l("homomorphic key registered"),
    "he.decrypted": _l("homomorphic result decrypted"),
    "keys.rotate": _l("master key rotated"),
}


def event_label(action: str) -> str:
    """An event's translated name; an action without one shows as recorded."""
    found = EVENT_LABELS.get(action)
    return str(found) if found is not None else action


def when_iso(text: str) -> str:
    """A ledger event's time (ISO 8601 text, UTC) as the console shows dates: per locale, in its time zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return str(format_datetime(moment, "medium"))


def register(bp: Blueprint) -> None:
    bp.add_app_template_filter(when_iso, "when_iso")

    @bp.route("/ledger")
    @signed_in(Role.AUDITOR)
    def ledger(person: Principal) -> Any:
        session = read_session()
        args = request.args
        shown = {name: args.get(name, "").strip() for name in ("action", "object_id", "since", "until", "after")}
        actions = list(session.scalars(select(LedgerEvent.action).distinct().order_by(LedgerEvent.action)))
        length = session.scalar(select(func.max(LedgerEvent.seq))) or 0
        context = {"person": person, "filters": shown, "actions": actions, "label": event_label, "length": length, "max_export": MAX_EXPORT}
        try:
            query = parse_model(EventsQuery, _query_args(shown), "filters")
        except BadRequest:
            error = _("A filter is not valid: dates are days (YYYY-MM-DD), ids and event names at most 64 characters.")
            return render_template("ledger.html", **context, page=None, badge=None, error=error), 400
        context |= {"page": event_page(session, query), "badge": verification(session)}
        return render_template("ledger.html", **context, error=None)

    @bp.route("/ledger/export")
    @signed_in(Role.AUDITOR)
    def ledger_export(person: Principal) -> Any:
        session = read_session()
        length = session.scalar(select(func.max(LedgerEvent.seq))) or 0
        try:  # by default the ledger from its first event (up to MAX_EXPORT of them)
            first, last = int(request.args.get("first") or 1), int(request.args.get("last") or length)
        except ValueError:
            first = last = 0
        if not 1 <= first <= last <= 2**62:
            raise BadRequest("first and last are event numbers, 1 <= first <= last")
        exported = segment(session, first, last)
        body = json.dumps(exported.model_dump(mode="json"), ensure_ascii=False, indent=1)
        name = f"ledger-{exported.first}-{exported.last}.json"
        return Response(body, mimetype="application/json", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _query_args(shown: dict[str, str]) -> dict[str, Any]:
    """The API's query from the form: dates are whole days in the console's time zone (``until`` included)."""
    query: dict[str, Any] = {"limit": PAGE, "after": shown["after"] or 0}
    if shown["action"]:
        query["action"] = shown["action"]
    if shown["object_id"]:
        query["object_id"] = shown["object_id"]
    for name, days in (("since", 0), ("until", 1)):
        if shown[name]:
            query[name] = _day_start(shown[name], days)
    return query


def _day_start(text: str, days: int) -> datetime | str:
    """The start of the day ``text`` (+ ``days``) in the console's time zone; text that is no date goes on as it is (and is refused)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return text
    zone = get_timezone()
    midnight = datetime.combine(day + timedelta(days=days), time())
    localize = getattr(zone, "localize", None)  # a pytz zone is attached by localize(), never by tzinfo= (which gives its LMT offset)
    return localize(midnight) if localize is not None else midnight.replace(tzinfo=zone)
