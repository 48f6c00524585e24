"""Differentially private answers to a validated query: which shapes qualify, and their ``jobs.dp`` plan.

The slice supported: one dataset, no joins or subqueries, GROUP BY only plain columns, outputs that
are those keys or COUNT(*), COUNT(DISTINCT <privacy unit>), SUM(measure), AVG(measure),
MEDIAN(measure), QUANTILE_CONT(measure, q) or QUANTILE(measure, q) (a literal q strictly between 0
and 1) over a measure with declared bounds. A key with a declared public domain releases every value
of it, so which keys occur in the data is never disclosed; a key without one is released only for
the values DP key selection chooses, which needs the grant's δ (``jobs.dp.answer``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sqlglot
from sqlglot import exp

from core.schema import DatasetSchema
from jobs.dp.answer import DPAnswer, answer
from jobs.dp.plan import COUNT, RULE, DPAggregate, DPKey, DPPlan, Source, build, unsupported
from jobs.query.model import OutputKind, QueryPlan
from jobs.query.parse import DIALECT
from policies.model import Aggregate

__all__ = ["COUNT", "RULE", "DPAggregate", "DPAnswer", "DPPlan", "answer", "plan_dp"]


def plan_dp(
    plan: QueryPlan,
    schemas: Mapping[str, DatasetSchema],
    max_rows: int,
    unique_units: frozenset[str] = frozenset(),
    *,
    key_selection: bool = False,
) -> DPPlan:
    """The DP form of a validated query, or ``PolicyViolation`` (rule ``dp_unsupported``) naming why not.

    ``unique_units`` names datasets in which every row is a different unit (the version's counts say
    so): there every unit already has one row, within any cap, so the per-unit capping pass is skipped.
    ``key_selection`` says whether the grant has a δ to select keys with: without it, every GROUP BY
    column needs a declared domain.
    """
    tree = sqlglot.parse_one(plan.sql, dialect=DIALECT)
    if not isinstance(tree, exp.Select) or len(plan.datasets) != 1:
        raise unsupported("a differentially private query reads exactly one dataset")
    if tree.args.get("joins") or any(s is not tree for s in tree.find_all(exp.Select)):
        raise unsupported("a differentially private query has no joins or subqueries")
    for clause in ("having", "limit", "offset", "distinct", "qualify"):
        if tree.args.get(clause):
            raise unsupported(f"{clause.upper()} is not supported in differentially private queries")
    dataset = plan.datasets[0]
    schema = schemas[dataset]
    table = next(iter(tree.find_all(exp.Table)))
    where = tree.args.get("where")
    source = Source(table, table.alias_or_name, schema.privacy_unit, where.this if where is not None else None)
    keys = _keys(tree, schema, source, key_selection)
    aggregates = _aggregates(tree, plan, schema)
    capped = max_rows if dataset not in unique_units else None
    return build(dataset, source, keys, aggregates, capped)


def _keys(tree: exp.Select, schema: DatasetSchema, source: Source, key_selection: bool) -> list[DPKey]:
    group = tree.args.get("group")
    grouped = list(group.expressions) if group else []
    names: dict[str, str] = {}
    for projection in tree.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(inner, exp.Column):
            names[inner.name] = projection.alias_or_name
    keys = []
    for expression in grouped:
        if not isinstance(expression, exp.Column):
            raise unsupported("a differentially private query groups by plain columns only")
        spec = schema.column(expression.name)
        domain = None if spec is None or spec.domain is None else tuple(spec.domain)
        if domain is None and not key_selection:
            raise unsupported(
                f"GROUP BY {expression.name} has no declared public domain, and the grant's policy has no delta for DP key"
                " selection: a declared domain or a delta is needed",
                expression.name,
            )
        keys.append(DPKey(names.get(expression.name, expression.name), source.column(expression.name), domain))
    return keys


def _aggregates(tree: exp.Select, plan: QueryPlan, schema: DatasetSchema) -> tuple[DPAggregate, ...]:
    found = []
    for projection, output in zip(tree.expressions, plan.outputs, strict=True):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if output.kind is OutputKind.GROUP_KEY:
            if not isinstance(inner, exp.Column):
                raise unsupported("a group key is output as the plain column", output.name)
            continue
        found.append(_aggregate(inner, output.name, schema))
    if not found:
        raise unsupported("a differentially private query outputs at least one aggregate")
    return tuple(found)


_KINDS: dict[type[exp.Expression], Aggregate] = {
    exp.Sum: Aggregate.SUM,
    exp.Avg: Aggregate.AVG,
    exp.Median: Aggregate.MEDIAN,
    exp.Quantile: Aggregate.QUANTILE,  # QUANTILE(x, q)
    exp.PercentileCont: Aggregate.QUANTILE,  # QUANTILE_CONT(x, q); the WITHIN GROUP form is not a plain column
}
_FRACTION_ARG: dict[type[exp.Expression], str] = {exp.Quantile: "quantile", exp.PercentileCont: "expression"}


def _aggregate(node: exp.Expression, name: str, schema: DatasetSchema) -> DPAggregate:
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
        return DPAggregate(name, Aggregate.COUNT, None)
    if isinstance(node, exp.Count) and _counts_units(node, schema):
        return DPAggregate(name, Aggregate.COUNT_DISTINCT, None)
    kind = _KINDS.get(type(node))  # exact classes, as in the allowlist: a subclass can mean another function
    if kind is None or not isinstance(node.this, exp.Column):
        raise unsupported(
            "differentially private outputs are COUNT(*), COUNT(DISTINCT <privacy unit>), SUM(column), AVG(column),"
            " MEDIAN(column) or QUANTILE_CONT(column, q)",
            name,
        )
    spec = schema.column(node.this.name)
    if spec is None or spec.bounds is None:
        raise unsupported("a summed, averaged or quantile column needs declared bounds", node.this.name)
    alpha = _fraction(node, name) if kind in (Aggregate.MEDIAN, Aggregate.QUANTILE) else None
    return DPAggregate(name, kind, node.this.name, float(spec.bounds.lower), float(spec.bounds.upper), alpha)


def _fraction(node: exp.Expression, name: str) -> float:
    """MEDIAN's 0.5, or a quantile's literal q, which must lie strictly between 0 and 1."""
    if isinstance(node, exp.Median):
        return 0.5
    argument = node.args.get(_FRACTION_ARG[type(node)])
    value = float(argument.to_py()) if isinstance(argument, exp.Literal) and argument.is_number else math.nan
    if not 0 < value < 1:  # NaN fails too
        raise unsupported("a differentially private quantile takes a literal fraction strictly between 0 and 1", name)
    return value


def _counts_units(node: exp.Count, schema: DatasetSchema) -> bool:
    """COUNT(DISTINCT <privacy-unit column>), the column bare: the number of units in the cell."""
    distinct = node.this
    return (
        isinstance(distinct, exp.Distinct)
        and len(distinct.expressions) == 1
        and isinstance(distinct.expressions[0], exp.Column)
        and distinct.expressions[0].name == schema.privacy_unit
    )
