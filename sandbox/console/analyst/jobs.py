"""The analyst's jobs: a list with live status, and one job's page, through the API's data-blind view.

Each job goes through ``sandbox.api.jobs.job_out`` with the analyst as caller, the function that answers
``GET /api/v1/jobs``: the reasons, verdicts and timings are those of ``sandbox.api.analyst_view``, so the
page shows nothing the API would not. A released job's page shows its result through
``sandbox.api.jobs.result_out`` (``GET /api/v1/jobs/{id}/result``) as a table and a chart
(``sandbox.console.analyst.results``). Another analyst's job is a 404, as in the API.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, make_response, render_template, request

from core.values import JobStatus, Role
from sandbox.api.jobs import job_out, result_out
from sandbox.console.analyst.results import chart_of, result_table
from sandbox.console.signin import is_htmx, signed_in
from sandbox.db import read_session
from sandbox.service import jobs as job_service
from sandbox.service.auth import Principal

PAGE = 100  # the newest jobs shown; the API pages on through the rest
REFRESH_SECONDS = 5  # while a shown job is unfinished, its list or page refreshes this often


def _unfinished(statuses: list[str]) -> bool:
    return any(not JobStatus(status).terminal for status in statuses)


def register(bp: Blueprint) -> None:
    @bp.route("/jobs")
    @signed_in(Role.ANALYST)
    def my_jobs(person: Principal) -> Any:
        shown = [job_out(job, person) for job in job_service.list_visible(read_session(), person, limit=PAGE)]
        live = _unfinished([job.status for job in shown])
        template = "jobs_table.html" if is_htmx(request) else "jobs.html"
        return render_template(template, person=person, jobs=shown, live=live, refresh=REFRESH_SECONDS)

    @bp.route("/jobs/<job_id>")
    @signed_in(Role.ANALYST)
    def job(person: Principal, job_id: str) -> Any:
        shown = job_out(job_service.owned(read_session(), person, job_id), person)
        live = _unfinished([shown.status])
        if is_htmx(request):
            response = make_response(render_template("job_status.html", person=person, job=shown, live=live, refresh=REFRESH_SECONDS))
            if not live:
                response.headers["HX-Refresh"] = "true"  # finished while the page watched: load it whole, with its result
            return response
        table = result_table(result_out(person, job_id)) if shown.status == JobStatus.RELEASED.value else None
        chart = chart_of(table) if table is not None else None
        return render_template("job.html", person=person, job=shown, live=live, refresh=REFRESH_SECONDS, table=table, chart=chart)
