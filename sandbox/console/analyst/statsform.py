"""The statistics form of a grant: crosstab, pivot, describe, quantiles and histogram, with fields built from the grant's columns.

The form builds the spec of ``jobs.stats.specs`` (one op at a time: ``?op=`` and ``?dataset=`` choose)
and hands it to the same functions as the SQL editor (``sandbox.console.analyst.submission.run_action``: the
API's dry run and submission), so the API's validation judges it and names the rule and column it
breaks. The fields offer the columns the grant's policy lets each role take (dimensions to group by,
numeric measures to aggregate); what the form cannot parse it passes on as typed, for the API to refuse.
"""

from __future__ import annotations

from typing import Any, get_args

from flask import Blueprint, render_template, request
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from core.values import JobKind, Role
from jobs.stats.specs import DESCRIBE_ALL, AggFunc
from policies.model import ColumnUse
from sandbox.api.schemas import JobIn
from sandbox.console.analyst.editor import epsilon_of
from sandbox.console.analyst.submission import Column, GrantPage, open_grant, run_action
from sandbox.console.signin import signed_in
from sandbox.db import read_session
from sandbox.service.auth import Principal

OPS = ("crosstab", "pivot", "describe", "quantiles", "histogram")
OP_NAMES = {
    "crosstab": _l("Crosstab (counts or one value by groups)"),
    "pivot": _l("Pivot table (several values by groups)"),
    "describe": _l("Describe (count, mean, spread, quartiles)"),
    "quantiles": _l("Quantiles"),
    "histogram": _l("Histogram"),
}
AGGFUNCS: tuple[str, ...] = get_args(AggFunc)
NUMERIC = frozenset({"int", "float"})
GROUPING = frozenset({ColumnUse.DIMENSION, ColumnUse.PLAIN})
MEASURING = frozenset({ColumnUse.MEASURE, ColumnUse.PLAIN})


def _chosen(page: GrantPage, args: MultiDict[str, str]) -> tuple[str, str]:
    """The op and dataset the page is for: the requested ones when the grant has them, else the first."""
    op = args.get("op", "")
    dataset = args.get("dataset", "")
    datasets = list(page.columns)
    return (op if op in OPS else OPS[0]), (dataset if dataset in datasets else (datasets[0] if datasets else ""))


def choices(page: GrantPage, dataset: str) -> dict[str, list[Column]]:
    """The columns each field may offer: dimensions to group by, numeric measures, numeric dimensions (histograms)."""
    columns = page.columns.get(dataset, [])
    return {
        "dimensions": [c for c in columns if c.use in GROUPING],
        "measures": [c for c in columns if c.use in MEASURING and c.type in NUMERIC],
        "binnable": [c for c in columns if c.use in GROUPING and c.type in NUMERIC],
    }


def _numbers(text: str) -> list[Any]:
    """Comma- or space-separated numbers as typed (the API converts and checks them)."""
    return [token for token in text.replace(",", " ").split() if token]


def _bins(text: str) -> Any:
    """A number of bins (one whole number) or the bins' edges."""
    tokens = _numbers(text)
    if len(tokens) == 1 and tokens[0].isdigit():
        return int(tokens[0])
    return tokens


def stats_spec(op: str, dataset: str, form: MultiDict[str, str]) -> dict[str, Any]:
    """The spec of ``op`` from the form's fields; empty optional fields are left out."""
    spec: dict[str, Any] = {"op": op, "dataset": dataset}
    if op in {"crosstab", "pivot"}:
        spec |= {"index": form.getlist("index"), "columns": form.getlist("columns"), "margins": form.get("margins") == "on"}
        aggfunc = form.getlist("aggfunc")
        if aggfunc:
            spec["aggfunc"] = aggfunc
        if op == "crosstab" and form.get("values"):
            spec["values"] = form.get("values")
        if op == "pivot":
            spec["values"] = form.getlist("values")
    elif op == "describe":
        spec["columns"] = form.getlist("columns")
        if form.getlist("statistics"):
            spec["statistics"] = form.getlist("statistics")
    elif op == "quantiles":
        spec |= {"column": form.get("column", ""), "q": _numbers(form.get("q", "")), "margins": form.get("margins") == "on"}
        if form.getlist("by"):
            spec["by"] = form.getlist("by")
    else:
        spec |= {"column": form.get("column", ""), "bins": _bins(form.get("bins", ""))}
    return spec


def register(bp: Blueprint) -> None:
    @bp.route("/grants/<grant_id>/stats", methods=["GET", "POST"])
    @signed_in(Role.ANALYST)
    def stats_form(person: Principal, grant_id: str) -> Any:
        page = open_grant(read_session(), person, grant_id)
        op, dataset = _chosen(page, request.args)
        context = {
            "person": person, "page": page, "op": op, "ops": OPS, "op_names": OP_NAMES, "dataset": dataset,
            "fields": choices(page, dataset), "aggfuncs": AGGFUNCS, "statistics": DESCRIBE_ALL, "form": request.form,
        }  # fmt: skip
        if request.method == "GET":
            return render_template("stats.html", **context)
        spec = stats_spec(op, dataset, request.form)
        if page.dp:
            spec |= epsilon_of(request.form.to_dict())
        done = run_action(person, JobIn(grant_id=page.grant.id, kind=JobKind.STATS, spec=spec), request.form)
        if isinstance(done, Response):
            return done
        return render_template("stats.html", **context, outcome=done), done.status
