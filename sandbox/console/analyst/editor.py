"""The SQL editor of a grant: validation as you type, a dry run on mock rows, and submission.

Each step calls the API's own function with the analyst as caller: the check is
``sandbox.api.jobs.prechecked`` (the pre-check that ``POST /api/v1/jobs`` and the dry run start with,
recording nothing), the dry run ``dry_run_out`` and submission ``submitted``, so the editor accepts and
refuses exactly what the API does and names the same rule and column. On a DP grant the job states its
ε (no default: the field starts empty). Refusals are shown in the page, never as an error page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from werkzeug.wrappers import Response

from core.errors import SandboxError
from core.values import JobKind, Role
from sandbox.api.jobs import prechecked
from sandbox.api.schemas import JobIn
from sandbox.console.analyst.submission import NUL_REFUSED, GrantPage, has_nul, open_grant, problem_of, run_action
from sandbox.console.signin import signed_in
from sandbox.db import read_session
from sandbox.service.auth import Principal

MAX_SQL = 20_000  # characters, as the API's query spec allows


def query_spec(page: GrantPage, form: dict[str, str]) -> dict[str, Any]:
    """The query spec of the form: the SQL as typed and, on a DP grant, the ε as typed (validated by the API)."""
    spec: dict[str, Any] = {"sql": form.get("sql", "")}
    if page.dp:
        spec |= epsilon_of(form)
    return spec


def epsilon_of(form: dict[str, str]) -> dict[str, Any]:
    """``{"epsilon": ...}`` when the field is filled: a number as a number, anything else as typed, which
    the API's validation then refuses by name; an empty field states none (and the API asks for one)."""
    text = form.get("epsilon", "").strip()
    if not text:
        return {}
    try:
        return {"epsilon": float(text)}
    except ValueError:
        return {"epsilon": text}


def register(bp: Blueprint) -> None:
    @bp.route("/grants/<grant_id>/query", methods=["GET", "POST"])
    @signed_in(Role.ANALYST)
    def query_editor(person: Principal, grant_id: str) -> Any:
        page = open_grant(read_session(), person, grant_id)
        form = {key: request.form.get(key, "") for key in ("sql", "epsilon")}
        context = {"person": person, "page": page, "form": form, "max_sql": MAX_SQL}
        if request.method == "GET":
            return render_template("query.html", **context)
        done = run_action(person, JobIn(grant_id=page.grant.id, kind=JobKind.QUERY, spec=query_spec(page, form)), request.form)
        if isinstance(done, Response):
            return done
        return render_template("query.html", **context, outcome=done), done.status

    @bp.route("/grants/<grant_id>/query/check", methods=["POST"])
    @signed_in(Role.ANALYST)
    def query_check(person: Principal, grant_id: str) -> Any:
        """The htmx fragment under the editor: the query passes the grant's policy, or the rule and column it breaks."""
        page = open_grant(read_session(), person, grant_id)
        form = {key: request.form.get(key, "") for key in ("sql", "epsilon")}
        if not form["sql"].strip():
            return render_template("query_check.html", empty=True)
        if has_nul(request.form):
            return render_template("query_check.html", problem=NUL_REFUSED)
        try:
            prechecked(person, JobIn(grant_id=page.grant.id, kind=JobKind.QUERY, spec=query_spec(page, form)))
        except SandboxError as exc:
            return render_template("query_check.html", problem=problem_of(exc))
        return render_template("query_check.html", passed=True)
