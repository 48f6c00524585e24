"""What the analyst's job forms share: the grant as the API shows it, its columns, and refusals shown in the page.

A form's job goes through the API's own functions (``sandbox.api.jobs.prechecked``, ``dry_run_out``,
``submitted``): the validation as you type is the pre-check that submission and the dry run start
with, so a page refuses exactly what ``POST /api/v1/jobs`` and ``POST /api/v1/jobs/dry-run`` refuse,
with the same rule and column, and never more. A refusal is shown in the page (with the API's status),
never as an error page; the API's message is English, the rule's name beside it is translated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, redirect, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from core.errors import SandboxError
from core.schema import DatasetSchema
from core.values import GrantStatus, JobKind
from jobs.query.model import QueryRule
from jobs.stats.values import StatsRule
from policies.model import ColumnUse
from sandbox.api.grants import budget_out
from sandbox.api.jobs import dry_run_out, submitted
from sandbox.api.schemas import BudgetOut, DryRunIn, GrantOut, JobIn
from sandbox.api.services import grant_out
from sandbox.console.analyst.results import ResultTable, result_table
from sandbox.models import Grant
from sandbox.service import grants as grant_service
from sandbox.service.auth import Principal

RULE_LABELS: dict[str, Any] = {  # a rule the analyst sees -> its name in the reader's language
    QueryRule.SINGLE_SELECT: _l("exactly one plain SELECT statement"),
    QueryRule.SUBQUERY: _l("only a filtering derived table or an aggregate IN (...) subquery"),
    QueryRule.TABLE_NOT_GRANTED: _l("only the grant's datasets may be read"),
    QueryRule.SELECT_STAR: _l("no SELECT *: name the outputs"),
    QueryRule.ROW_LEVEL_OUTPUT: _l("every output is an aggregate or a group key: no single rows"),
    QueryRule.RESERVED_NAME: _l("names starting with __ are reserved; outputs are unique"),
    QueryRule.COLUMN_DENIED: _l("this column may not be used under the grant"),
    QueryRule.JOIN_KEY_ONLY_IN_JOIN: _l("a join key is used only in JOIN ... ON"),
    QueryRule.MEASURE_OUTSIDE_AGGREGATE: _l("a measure is used only inside an aggregate"),
    QueryRule.DIMENSION_AS_MEASURE: _l("a dimension is grouped, filtered or counted, not summed"),
    QueryRule.UNKNOWN_COLUMN: _l("no such column in the grant's datasets"),
    QueryRule.AMBIGUOUS_COLUMN: _l("the column name is ambiguous: qualify it with its table"),
    QueryRule.AGGREGATE_NOT_ALLOWED: _l("this aggregate is not allowed here by the grant's policy"),
    QueryRule.WINDOW_FUNCTION: _l("window functions are not allowed"),
    QueryRule.FUNCTION_NOT_ALLOWED: _l("this function or operator is not on the allowed list"),
    QueryRule.JOIN_TYPE: _l("only INNER JOIN ... ON"),
    QueryRule.JOIN_CONDITION: _l("ON is an AND of join-key equalities between two tables"),
    QueryRule.ENCRYPTED_COLUMN: _l("encrypted columns are aggregated by homomorphic jobs only"),
    QueryRule.AGGREGATE_ARGUMENT: _l("an aggregate takes a measure column or arithmetic of measures"),
    QueryRule.AGGREGATE_OUTPUT: _l("an aggregate output is the bare aggregate, nothing computed on it"),
    QueryRule.GROUP_KEY: _l("a group key is one dimension column (or a function of one), and it is output"),
    QueryRule.SENSITIVE_KEY: _l("a sensitive column groups only through its declared domain or bins"),
    QueryRule.HAVING: _l("no HAVING"),
    QueryRule.ORDER_BY: _l("ORDER BY output group keys only"),
    QueryRule.LIMIT: _l("no LIMIT or OFFSET"),
    QueryRule.TYPE_MISMATCH: _l("text is compared with numbers or dates"),
    StatsRule.DATASET_NOT_GRANTED: _l("the dataset is not one of the grant's"),
    StatsRule.IDENTIFIER: _l("identifiers and the privacy unit are never analysed"),
    StatsRule.MEASURE_AS_DIMENSION: _l("a measure is only aggregated, never grouped by"),
    StatsRule.NOT_NUMERIC: _l("aggregated columns must be numeric"),
    StatsRule.DATA_DERIVED_BINS: _l("histogram edges come from the form or the declared bounds only"),
    "dp_unsupported": _l("this shape has no differentially private form"),
    "budget_exhausted": _l("the privacy budget does not allow this epsilon"),
}


@dataclass(frozen=True)
class Problem:
    """A refusal as the API answers it (status, code, message, details), with the rule's translated name."""

    status: int
    code: str
    message: str
    rule: str | None = None
    rule_text: str | None = None
    column: str | None = None
    field: str | None = None
    limit: str | None = None
    problems: tuple[dict[str, str], ...] = ()


def problem_of(exc: SandboxError) -> Problem:
    """The error the API would answer (its 5xx as the API's fixed text: a server fault says nothing)."""
    if exc.status >= 500:
        return Problem(500, exc.code, "the server could not complete the request")
    details = exc.details
    rule = details.get("rule") if isinstance(details.get("rule"), str) else None
    if rule is None and exc.code == "budget_exhausted":
        rule = "budget_exhausted"
    found = RULE_LABELS.get(rule) if rule else None
    listed = details.get("problems")
    return Problem(
        status=exc.status,
        code=exc.code,
        message=exc.message,
        rule=rule,
        rule_text=str(found) if found is not None else None,
        column=_text(details.get("column")),
        field=_text(details.get("field")),
        limit=_text(details.get("limit")),
        problems=tuple(p for p in listed if isinstance(p, dict)) if isinstance(listed, list) else (),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    use: ColumnUse


@dataclass(frozen=True)
class GrantPage:
    """A grant of the analyst's organisation as ``GET /api/v1/grants/{id}`` and ``/budget`` show it, with its columns."""

    grant: GrantOut
    budget: BudgetOut | None  # DP grants only
    columns: dict[str, list[Column]]  # dataset name -> the columns the policy lets a job use, in the schema's order

    @property
    def active(self) -> bool:
        return self.grant.status is GrantStatus.APPROVED and self.grant.policy is not None

    def allows(self, kind: str) -> bool:
        return self.active and self.grant.policy is not None and JobKind(kind) in self.grant.policy.job_kinds

    @property
    def dp(self) -> bool:
        return self.grant.policy is not None and self.grant.policy.dp is not None


def grant_page(session: Session, grant: Grant) -> GrantPage:
    shown = grant_out(grant)
    budget = budget_out(session, grant) if shown.policy is not None and shown.policy.dp is not None else None
    return GrantPage(shown, budget, _columns(grant, shown))


def open_grant(session: Session, person: Principal, grant_id: str) -> GrantPage:
    """A grant the person sees (another organisation's is a 404, as in the API)."""
    return grant_page(session, grant_service.get_visible(session, person, grant_id))


def _columns(grant: Grant, shown: GrantOut) -> dict[str, list[Column]]:
    uses = shown.policy.columns if shown.policy is not None else {}
    found: dict[str, list[Column]] = {}
    for link in grant.datasets:
        schema = DatasetSchema.model_validate(link.dataset.current.schema)
        allowed = uses.get(link.dataset.name, {})
        found[link.dataset.name] = [
            Column(name, spec.type.value, allowed[name])
            for name, spec in schema.columns.items()
            if allowed.get(name, ColumnUse.DENY) is not ColumnUse.DENY
        ]
    return found


DRY_RUN_ROWS = 1_000  # mock rows per dataset, the API's default


@dataclass(frozen=True)
class Outcome:
    """What a form's POST came to, when it stays on the page: a refusal, or a dry run's answer on mock rows."""

    status: int
    problem: Problem | None = None
    dry_run: ResultTable | None = None


NUL_REFUSED = Problem(400, "bad_request", "text in the body may not contain NUL characters")


def has_nul(form: MultiDict[str, str]) -> bool:
    """NUL cannot be stored in PostgreSQL text: the API refuses it at its edge (``routing``), and so do the forms."""
    return any("\x00" in value for _, value in form.items(multi=True))


def run_action(person: Principal, body: JobIn, form: MultiDict[str, str]) -> Response | Outcome:
    """``action=dry_run``: ``POST /api/v1/jobs/dry-run``'s answer; ``action=submit``: ``POST /api/v1/jobs``,
    then the job's page. A refusal (the API's 4xx) stays on the form."""
    action = form.get("action")
    if action not in {"dry_run", "submit"}:
        abort(400)
    if has_nul(form):
        return Outcome(400, problem=NUL_REFUSED)
    try:
        if action == "dry_run":
            answer = dry_run_out(person, DryRunIn(grant_id=body.grant_id, kind=body.kind, spec=body.spec, rows=DRY_RUN_ROWS))
            return Outcome(200, dry_run=result_table(answer))
        created = submitted(person, body)
    except SandboxError as exc:
        problem = problem_of(exc)
        return Outcome(problem.status, problem=problem)
    return redirect(url_for("console.job", job_id=created.id), 303)
