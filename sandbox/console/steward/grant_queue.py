"""The steward's grant queue: requests with their scenario (应用场景), the policy editor, approval and rejection.

The editor's form is turned into the body of ``POST /api/v1/grants/{id}/approve`` and validated by the
API's own model (``ApproveIn``, whose ``policy`` is ``policies.model.Policy``) before
``sandbox.service.grants.approve`` checks it against the datasets and saves it, as the API does; a
refusal names the field, and its message stands next to that field. Presets fill the form by the
datasets' level (stricter for 核心); the steward changes what the scenario needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from core.schema import DatasetSchema
from core.values import ColumnRole, GrantStatus, JobKind, Level, Role
from policies.model import ALLOWED_USES, Aggregate, ColumnUse, DPSettings, ReleaseMode, ScoreSettings
from sandbox.api.schemas import ApproveIn, ReasonIn
from sandbox.api.services import grant_out, ledger
from sandbox.console.signin import signed_in
from sandbox.console.steward.policy_form import BOOLEAN_FIELDS, DISCLOSURE_FIELDS, PRESETS, preset_form
from sandbox.console.steward.steward_forms import Refusal, attempt, end_of_day
from sandbox.db import read_session, writing
from sandbox.models import Grant, Org
from sandbox.service import grants
from sandbox.service.auth import Principal
from sandbox.service.ledger import Ledger
from sandbox.service.validation import parse_model

LEVEL_ORDER = [Level.GENERAL, Level.IMPORTANT, Level.CORE]
FIELD_LABELS = {
    "disclosure.threshold": _l("Minimum privacy units per cell"),
    "disclosure.dof_threshold": _l("Minimum residual degrees of freedom of a model"),
    "disclosure.nk_n": _l("Dominance rule: n largest contributors"),
    "disclosure.nk_k": _l("Dominance rule: their largest share (0–1)"),
    "disclosure.p_ratio": _l("p-ratio rule: p (0–1)"),
    "disclosure.zeros_disclosive": _l("Zeros are disclosive"),
    "disclosure.check_missing": _l("Check missing values"),
    "disclosure.rounding": _l("Round every released number"),
    "disclosure.round_base": _l("Rounding base"),
    "disclosure.secondary_suppression": _l("Secondary suppression"),
    "disclosure.max_leverage": _l("Largest leverage of one unit in a model (0–1)"),
    "dp.epsilon_total": _l("ε of the whole grant"),
    "dp.epsilon_per_job": _l("ε one job may spend at most"),
    "dp.delta_total": _l("δ of the whole grant"),
    "dp.max_rows_per_unit": _l("Rows kept per privacy unit"),
    "score.max_entities_per_job": _l("Entities one scoring job may score"),
    "score.max_jobs_per_entity": _l("Scoring jobs per entity and period"),
    "score.period_days": _l("Period (days)"),
}
RELEASE_MODE_LABELS = {
    ReleaseMode.AUTO: _l("automatic: flagged cells are withheld, the rest released"),
    ReleaseMode.REVIEW_ON_FLAG: _l("review when a cell is flagged"),
    ReleaseMode.ALWAYS_REVIEW: _l("every output is reviewed"),
}
STATUS_LABELS = {
    GrantStatus.REQUESTED: _l("awaiting approval"),
    GrantStatus.APPROVED: _l("approved"),
    GrantStatus.REJECTED: _l("rejected"),
    GrantStatus.REVOKED: _l("revoked"),
    GrantStatus.EXPIRED: _l("expired"),
}
USE_LABELS = {
    ColumnUse.DENY: _l("denied"),
    ColumnUse.JOIN_KEY: _l("join key only"),
    ColumnUse.DIMENSION: _l("dimension (filter, group by)"),
    ColumnUse.MEASURE: _l("measure (inside aggregates)"),
    ColumnUse.PLAIN: _l("plain (may be output as is)"),
}


def _columns(grant: Grant) -> list[tuple[str, DatasetSchema]]:
    return [(link.dataset.name, DatasetSchema.model_validate(link.dataset.current.schema)) for link in grant.datasets]


def _level(grant: Grant) -> Level:
    """The strictest level among the grant's datasets: its preset."""
    return max((Level(link.dataset.level) for link in grant.datasets), key=LEVEL_ORDER.index, default=Level.GENERAL)


def policy_from_form(form: MultiDict[str, str], grant: Grant) -> dict[str, Any]:
    """The editor's form as the API's ``policy`` JSON: values as typed, for ``Policy`` to judge."""
    columns = {
        name: {column: form.get(f"use:{i}:{j}", ColumnUse.DENY.value) for j, column in enumerate(schema.columns)}
        for i, (name, schema) in enumerate(_columns(grant))
    }
    disclosure: dict[str, bool | str] = {name: f"disclosure.{name}" in form for name in DISCLOSURE_FIELDS if name in BOOLEAN_FIELDS}
    disclosure |= {name: form.get(f"disclosure.{name}", "") for name in DISCLOSURE_FIELDS if name not in BOOLEAN_FIELDS}
    policy: dict[str, Any] = {
        "columns": columns,
        "aggregates": form.getlist("aggregates"),
        "job_kinds": form.getlist("job_kinds"),
        "disclosure": disclosure,
        "release_mode": form.get("release_mode", ""),
        "reviewers": form.get("reviewers", ""),
    }
    if form.get("dp"):
        policy["dp"] = {name: form.get(f"dp.{name}", "") for name in DPSettings.model_fields}
    if form.get("score"):
        policy["he"] = {"score": {name: form.get(f"score.{name}", "") for name in ScoreSettings.model_fields}}
    return policy


def _field_errors(refusal: Refusal, grant: Grant) -> dict[str, list[str]]:
    """Each problem under the form field it names: ``policy.disclosure.threshold`` under ``disclosure.threshold``,
    a column's under its use, ``expires_at`` under the date."""
    where = {(name, column): f"use:{i}:{j}" for i, (name, schema) in enumerate(_columns(grant)) for j, column in enumerate(schema.columns)}
    found: dict[str, list[str]] = {}
    for problem in refusal.problems:
        text = problem.get("problem", "")
        if "column" in problem:
            key = where.get((problem.get("dataset", ""), problem["column"]), "policy")
        else:
            key = problem.get("field", "policy").removeprefix("policy.")
            key = {"expires_at": "expires_on", "policy": "policy"}.get(key, key)
            if key.startswith("he.score."):
                key = key.removeprefix("he.")
        found.setdefault(key, []).append(text)
    if not refusal.problems:
        found["policy"] = [refusal.message]
    return found


def _page(person: Principal, grant: Grant, form: MultiDict[str, str], refusal: Refusal | None = None, status: int = 200) -> Any:
    session = read_session()
    requester = session.get(Org, grant.org_id)
    shown = grant_out(grant)
    context = {
        "person": person,
        "grant": shown,
        "policy_text": json.dumps(shown.policy.model_dump(mode="json"), ensure_ascii=False, indent=2) if shown.policy else "",
        "requester": requester.name if requester else "",
        "schemas": _columns(grant),
        "form": form,
        "refusal": refusal,
        "errors": _field_errors(refusal, grant) if refusal else {},
        "level": form.get("preset", _level(grant).value),
        "presets": [level.value for level in PRESETS],
        "allowed": {role: sorted(ALLOWED_USES[role], key=list(ColumnUse).index) for role in ColumnRole},
        "aggregates": list(Aggregate),
        "job_kinds": list(JobKind),
        "release_modes": list(ReleaseMode),
        "disclosure_fields": DISCLOSURE_FIELDS,
        "boolean_fields": BOOLEAN_FIELDS,
        "field_labels": FIELD_LABELS,
        "release_mode_labels": RELEASE_MODE_LABELS,
        "use_labels": USE_LABELS,
        "status_labels": STATUS_LABELS,
        "dp_fields": list(DPSettings.model_fields),
        "score_fields": list(ScoreSettings.model_fields),
    }
    return render_template("steward_grant.html", **context), status


def register(bp: Blueprint) -> None:
    @bp.route("/steward/grants")
    @signed_in(Role.STEWARD)
    def grant_queue(person: Principal) -> Any:
        session = read_session()
        found = [grant_out(g) for g in grants.list_visible(session, person)]
        pending = [g for g in found if g.status is GrantStatus.REQUESTED]
        decided = sorted((g for g in found if g.status is not GrantStatus.REQUESTED), key=lambda g: g.created_at, reverse=True)
        orgs = {g.org_id: org.name if (org := session.get(Org, g.org_id)) else "" for g in found}
        context = {"pending": pending, "decided": decided, "orgs": orgs, "status_labels": STATUS_LABELS}
        return render_template("steward_grants.html", person=person, **context)

    @bp.route("/steward/grants/<grant_id>")
    @signed_in(Role.STEWARD)
    def steward_grant(person: Principal, grant_id: str) -> Any:
        grant = grants.get_visible(read_session(), person, grant_id)
        wanted = request.args.get("preset", "")
        level = Level(wanted) if wanted in {lv.value for lv in Level} else _level(grant)
        return _page(person, grant, preset_form(level, grant, datetime.now(UTC).date()))

    @bp.route("/steward/grants/<grant_id>/approve", methods=["POST"])
    @signed_in(Role.STEWARD)
    def approve_grant(person: Principal, grant_id: str) -> Any:
        grant = grants.get_visible(read_session(), person, grant_id)

        def approve() -> None:
            data = {"policy": policy_from_form(request.form, grant), "expires_at": end_of_day(request.form.get("expires_on", ""))}
            body = parse_model(ApproveIn, data, "request body")
            with writing() as session:
                grants.approve(session, ledger(), person, grant_id, body.policy, body.expires_at)

        refusal = attempt(approve)
        if refusal is not None:
            return _page(person, grant, request.form, refusal, refusal.status)
        flash(_("The grant is approved."))
        return redirect(url_for("console.grant_queue"))

    @bp.route("/steward/grants/<grant_id>/reject", methods=["POST"])
    @signed_in(Role.STEWARD)
    def reject_grant(person: Principal, grant_id: str) -> Any:
        return _close(person, grant_id, grants.reject, _("The grant is rejected."))

    @bp.route("/steward/grants/<grant_id>/revoke", methods=["POST"])
    @signed_in(Role.STEWARD)
    def revoke_grant(person: Principal, grant_id: str) -> Any:
        return _close(person, grant_id, grants.revoke, _("The grant is revoked."))


def _close(person: Principal, grant_id: str, close: Callable[[Session, Ledger, Principal, str, str], Grant], done: str) -> Any:
    """Reject a request or revoke an approved grant with the reason of the form, through the API's model and service."""
    grant = grants.get_visible(read_session(), person, grant_id)

    def decide() -> None:
        body = parse_model(ReasonIn, {"reason": request.form.get("reason", "").strip()}, "request body")
        with writing() as session:
            close(session, ledger(), person, grant_id, body.reason)

    refusal = attempt(decide)
    if refusal is not None:
        return _page(person, grant, preset_form(_level(grant), grant, datetime.now(UTC).date()), refusal, refusal.status)
    flash(done)
    return redirect(url_for("console.grant_queue"))
