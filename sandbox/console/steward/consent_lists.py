"""The steward's consent lists of scoring grants: who consented, registering and revoking, as the API does.

Each action goes through the API's models (``ConsentsIn``, ``RevokeConsentsIn``, ``ConsentsOut``) and
``sandbox.service.consents``; reading the list is on the ledger (how many identifiers were shown,
never which), exactly as ``GET /api/v1/grants/{id}/consents``. Identifiers are typed one per line.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from core.values import Role
from sandbox.api.consents import ConsentsIn, ConsentsOut, ConsentsQuery, RevokeConsentsIn
from sandbox.api.services import grant_out, ledger
from sandbox.console.signin import signed_in
from sandbox.console.steward.steward_forms import Refusal, attempt, end_of_day, refuse_nul
from sandbox.db import read_session, writing
from sandbox.service import consents, grants
from sandbox.service.auth import Principal
from sandbox.service.validation import parse_model

PAGE = 200  # identifiers shown per page
STATUS_LABELS = {
    consents.ConsentStatus.ACTIVE: _l("current"),
    consents.ConsentStatus.EXPIRED: _l("expired"),
    consents.ConsentStatus.REVOKED: _l("revoked"),
}


def _entities(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _page(person: Principal, grant_id: str, refusal: Refusal | None = None) -> Any:
    refuse_nul()
    after = request.args.get("after")
    query = parse_model(ConsentsQuery, {"limit": PAGE} | ({"after": after} if after else {}), "query parameters")
    with writing() as session:
        shown = ConsentsOut.model_validate(consents.view(session, ledger(), person, grant_id, query.after, query.limit))
        grant = grant_out(grants.get_visible(session, person, grant_id))
    context = {"person": person, "grant": grant, "consents": shown, "refusal": refusal, "labels": STATUS_LABELS}
    return render_template("steward_consents.html", **context), (refusal.status if refusal else 200)


def register(bp: Blueprint) -> None:
    @bp.route("/steward/grants/<grant_id>/consents")
    @signed_in(Role.STEWARD)
    def grant_consents(person: Principal, grant_id: str) -> Any:
        return _page(person, grant_id)

    @bp.route("/steward/grants/<grant_id>/consents", methods=["POST"])
    @signed_in(Role.STEWARD)
    def register_consents(person: Principal, grant_id: str) -> Any:
        grants.get_visible(read_session(), person, grant_id)
        data = {"entities": _entities(request.form.get("entities", "")), "valid_until": end_of_day(request.form.get("valid_until", ""))}

        def register() -> dict[str, Any]:
            body = parse_model(ConsentsIn, data, "request body")
            with writing() as session:
                return consents.register(session, ledger(), person, grant_id, body.entities, body.valid_until)

        done = attempt(register)
        if isinstance(done, Refusal):
            return _page(person, grant_id, done)
        flash(_("Consents registered: %(new)d new, %(renewed)d renewed.", new=done["registered"], renewed=done["renewed"]))
        return redirect(url_for("console.grant_consents", grant_id=grant_id))

    @bp.route("/steward/grants/<grant_id>/consents/revoke", methods=["POST"])
    @signed_in(Role.STEWARD)
    def revoke_consents(person: Principal, grant_id: str) -> Any:
        grants.get_visible(read_session(), person, grant_id)

        def revoke() -> dict[str, Any]:
            body = parse_model(RevokeConsentsIn, {"entities": _entities(request.form.get("entities", ""))}, "request body")
            with writing() as session:
                return consents.revoke(session, ledger(), person, grant_id, body.entities)

        done = attempt(revoke)
        if isinstance(done, Refusal):
            return _page(person, grant_id, done)
        flash(_("Consents revoked: %(revoked)d; without a consent: %(none)d.", revoked=done["revoked"], none=done["without_consent"]))
        return redirect(url_for("console.grant_consents", grant_id=grant_id))
