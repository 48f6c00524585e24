"""The auditor's review queue: held outputs, one held job's raw output beside its proposed release, and the decision form.

The queue is ``sandbox.api.reviews.held_for``, a job's page ``review_item`` (the item ``GET /api/v1/reviews``
answers, its viewing on the ledger), and a decision ``decide_review``, the function behind
``POST /api/v1/reviews/{id}``: the two-person rule, the blinded review of script jobs, the budget and the
release audit are the API's own. A refusal (deciding twice, a job of one's own organisation, a bad
reason) is shown in the page with a fixed translated text, never the error's own words.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from core.errors import BadRequest, Conflict, Forbidden, NotFound, SandboxError
from core.values import JobKind, JobStatus, Role
from sandbox.api.jobs import job_out
from sandbox.api.reviews import decide_review, decisions_of, held_for, held_job, review_item, reviewers_required
from sandbox.api.schemas import ReviewIn, ReviewItem
from sandbox.console.i18n import STATUS_LABELS
from sandbox.console.signin import signed_in
from sandbox.db import read_session, writing
from sandbox.service.auth import Principal
from sandbox.service.validation import parse_model

REASON_MAX = 5_000


def register(bp: Blueprint) -> None:
    @bp.route("/reviews")
    @signed_in(Role.AUDITOR)
    def review_queue(person: Principal) -> Any:
        session = read_session()
        queue = []
        for job in held_for(session, person):
            decisions = decisions_of(session, job)
            queue.append(
                {
                    "job": job_out(job, person),
                    "required": reviewers_required(session, job),
                    "decided": len(decisions),
                    "mine": any(d.reviewer == person.user_id for d in decisions),
                }
            )
        return render_template("reviews.html", person=person, queue=queue)

    @bp.route("/reviews/<job_id>", methods=["GET", "POST"])
    @signed_in(Role.AUDITOR)
    def review(person: Principal, job_id: str) -> Any:
        error = None
        if request.method == "POST":
            error = _decide(person, job_id)
            if error is None:
                return redirect(url_for("console.review_queue"))
        try:
            with writing() as session:
                item = review_item(session, person, held_job(session, person, job_id))
        except Conflict as exc:
            flash(_("This output no longer awaits review (it is %(status)s).", status=_status(exc)))
            return redirect(url_for("console.review_queue"))
        return render_template("review.html", person=person, item=item, view=_view(item, person), error=error), 400 if error else 200


def _decide(person: Principal, job_id: str) -> str | None:
    """Record the form's decision through the API's own function; a translated error for the page, or None (and a notice)."""
    form = request.form
    chosen = form.getlist("outputs") if form.get("scope") == "some" else None
    try:
        fields = {"decision": form.get("decision", ""), "reason": form.get("reason", "").strip(), "outputs": chosen}
        body = parse_model(ReviewIn, fields, "form")
        decided = decide_review(person, job_id, body)
    except NotFound:
        raise
    except Conflict as exc:
        if exc.details.get("field") == "reviewer":
            return str(_("You have decided on this output already: the two-person rule needs another auditor's decision."))
        return str(_("This output no longer awaits review (it is %(status)s).", status=_status(exc)))
    except Forbidden:
        return str(_("Nobody reviews a job of their own organisation."))
    except BadRequest as exc:
        return _form_problem(exc)
    if decided.status == "held":
        flash(_("Your decision is recorded. The output stays held until the other reviewers have decided."))
    else:
        flash(_("Your decision is recorded. The job is now: %(status)s.", status=_status_label(decided.status)))
    return None


def _form_problem(exc: SandboxError) -> str:
    fields = {str(p.get("field", "")) for p in exc.details.get("problems", [])} | {str(exc.details.get("field", ""))}
    if any(f.startswith("outputs") for f in fields):
        return str(_("Choose at least one of the outputs the job proposed for release (a script job's release only)."))
    if "decision" in fields:
        return str(_("Choose to release or to return the output."))
    return str(_("Write a reason of 3 to %(n)d characters: the analyst reads it.", n=REASON_MAX))


def _status(exc: Conflict) -> str:
    return _status_label(str(exc.details.get("status", "")))


def _status_label(status: str) -> str:
    try:
        return str(STATUS_LABELS[JobStatus(status)])
    except ValueError:
        return status


def _view(item: ReviewItem, person: Principal) -> dict[str, Any]:
    """What the page lays out: withheld cells by (row, column), the script's outputs, and whether this auditor may still decide."""
    proposed = item.proposed
    notes = {(n["row"], n["column"]): n for n in proposed.get("notes", []) if isinstance(n, dict) and "row" in n}
    columns = [c["name"] if isinstance(c, dict) else str(c) for c in proposed.get("columns", [])]
    return {
        "notes": notes,
        "columns": columns,
        "script": item.job.kind is JobKind.SCRIPT,
        "outputs": proposed.get("outputs", {}),
        "mine": any(d.reviewer == person.user_id for d in item.decisions),
        "releases": sum(1 for d in item.decisions if d.decision == "release"),
    }
