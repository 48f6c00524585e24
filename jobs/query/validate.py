"""The query pipeline: parse -> structure -> qualify -> functions -> column rules and shape -> safety -> rewrite.

Validation happens before a job is queued; the plan it returns is what the worker runs. The tree
that is validated is the tree that is generated as ``executable_sql``, so the engine never sees
a text that was not checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from core.errors import InternalError
from core.schema import DatasetSchema
from jobs.query.checker import Checker
from jobs.query.functions import check_functions, normalise_functions
from jobs.query.keys import as_run
from jobs.query.model import BadSql, OutputKind, QueryPlan, QueryRule, violation
from jobs.query.parse import DIALECT, parse_select
from jobs.query.resolve import qualify_query
from jobs.query.rewrite import add_evidence, add_unit_columns
from jobs.query.safety import make_safe
from jobs.query.spelling import spelling_of
from jobs.query.structure import check_structure
from policies.model import Policy


def validate(
    sql: str,
    policy: Policy,
    schemas: Mapping[str, DatasetSchema],
    unique_units: frozenset[str] = frozenset(),
    top_n: int | None = None,
) -> QueryPlan:
    """Check ``sql`` against ``policy`` over the grant's datasets (``schemas`` by dataset name) and plan it.

    ``unique_units`` names datasets whose every row is a distinct privacy unit (known from the
    version's counts); it only changes how the plan counts units, never what is allowed.

    ``top_n`` asks for the evidence columns of ``policies.evidence`` (``__top_<c>`` then holds at
    most ``top_n`` per-unit totals; pass ``max(nk_n, 2)``). Without it the plan carries only the
    ``__units_<i>`` counts, and output control, reading absent evidence as "not applicable", cannot
    apply the dominance, missing-value or order-statistic rules: every plan whose result is
    released must be made with ``top_n``.

    Raises ``BadSql`` for text that is not one parseable query, and ``PolicyViolation`` (details:
    ``rule``, ``column``) for the first rule the query breaks.
    """
    try:
        return _validate(sql, policy, schemas, unique_units, top_n)
    except RecursionError:
        raise BadSql("the query is too deeply nested", details={"field": "sql"}) from None


def _validate(sql: str, policy: Policy, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str], top_n: int | None) -> QueryPlan:
    if top_n is not None and top_n < 1:
        raise InternalError(f"top_n must be at least 1, not {top_n}")
    spelling = spelling_of(schemas)
    select = parse_select(sql, spelling)
    normalise_functions(select)
    check_structure(select, schemas)
    qualified = qualify_query(select, schemas, spelling)
    _check_whole_rows(qualified)
    check_functions(qualified, policy.aggregates)
    checker = Checker(policy, schemas)
    outputs = checker.query(qualified)
    keys = checker.keys(qualified, outputs)
    make_safe(qualified, schemas, spelling)
    executable, unit_columns = add_unit_columns(qualified, schemas, unique_units)
    evidence_columns: tuple[str, ...] = ()
    if top_n is not None:
        executable, evidence_columns = add_evidence(executable, outputs, schemas, unique_units, top_n, policy.disclosure.rounding)
    datasets = tuple(sorted({table.name for table in qualified.find_all(exp.Table)}))
    # Both trees are ours and used no more: generated as they are, without the copy sqlglot makes by default.
    return QueryPlan(
        sql=qualified.sql(dialect=DIALECT, copy=False),
        datasets=datasets,
        outputs=outputs,
        group_keys=tuple(output.name for output in outputs if output.kind is OutputKind.GROUP_KEY),
        executable_sql=executable.sql(dialect=DIALECT, copy=False),
        unit_columns=unit_columns,
        evidence_columns=evidence_columns,
        keys=as_run(keys, qualified),
    )


def _check_whole_rows(qualified: exp.Select) -> None:
    """DuckDB reads a bare table name in an expression as the whole row (a struct): that is SELECT *."""
    if any(True for _ in qualified.find_all(exp.TableColumn)):
        raise violation(QueryRule.SELECT_STAR, "a table name used as a value selects whole rows: name the columns")
