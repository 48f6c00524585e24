"""Differentially private answers to a validated query: which shapes qualify, and the SQL of their exact cells.

The slice supported: one dataset, no joins or subqueries, GROUP BY only plain columns with a declared
public domain, outputs that are those keys or COUNT(*), SUM(measure), AVG(measure) over a measure
with declared bounds. The cells are every combination of the keys' domains, so that which keys occur
in the data is never disclosed. ``cells_sql`` caps each unit's rows, clamps the measures and sums
per cell; noise is added by ``policies.dp`` afterwards.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from core.errors import PolicyViolation
from core.schema import DatasetSchema, Scalar
from jobs.query.model import OutputKind, QueryPlan
from jobs.query.parse import DIALECT
from policies import dp
from policies.budget import Epsilon
from policies.model import Aggregate

RULE = "dp_unsupported"  # the rule a refused shape names; validation's own rules are ``QueryRule``
MAX_CELLS = 100_000  # every combination of the keys' domains is released: bound the table's size
ROW_NUMBER = "__dp_row"
COUNT = "__dp_count"


@dataclass(frozen=True)
class DPAggregate:
    name: str  # the output column
    aggregate: Aggregate  # COUNT, SUM or AVG
    measure: str | None  # the measured column (None for COUNT(*))
    lower: float = 0.0
    upper: float = 0.0

    @property
    def sum_column(self) -> str:
        return f"__dp_sum_{self.measure}"

    @property
    def count_column(self) -> str:
        return f"__dp_n_{self.measure}"


@dataclass(frozen=True)
class DPPlan:
    dataset: str
    keys: tuple[tuple[str, str, tuple[Scalar, ...]], ...]  # (output name, column, declared domain)
    aggregates: tuple[DPAggregate, ...]
    sql: str  # the exact per-cell counts and sums, for the cells present in the data


def plan_dp(plan: QueryPlan, schemas: Mapping[str, DatasetSchema], max_rows: int) -> DPPlan:
    """The DP form of a validated query, or ``PolicyViolation`` (rule ``dp_unsupported``) naming why not."""
    tree = sqlglot.parse_one(plan.sql, dialect=DIALECT)
    if not isinstance(tree, exp.Select) or len(plan.datasets) != 1:
        raise _unsupported("a differentially private query reads exactly one dataset")
    if tree.args.get("joins") or any(s is not tree for s in tree.find_all(exp.Select)):
        raise _unsupported("a differentially private query has no joins or subqueries")
    for clause in ("having", "limit", "offset", "distinct", "qualify"):
        if tree.args.get(clause):
            raise _unsupported(f"{clause.upper()} is not supported in differentially private queries")
    dataset = plan.datasets[0]
    schema = schemas[dataset]
    keys = _keys(tree, schema)
    if math.prod(len(domain) for _, _, domain in keys) > MAX_CELLS:
        raise _unsupported(f"the group keys' domains combine into more than {MAX_CELLS} cells")
    aggregates = _aggregates(tree, plan, schema)
    table = next(iter(tree.find_all(exp.Table)))
    return DPPlan(dataset, keys, aggregates, _cells_sql(tree, table, schema.privacy_unit, keys, aggregates, max_rows))


def _unsupported(reason: str, column: str | None = None) -> PolicyViolation:
    return PolicyViolation(f"{reason} (rule {RULE})", details={"rule": RULE, "column": column})


def _keys(tree: exp.Select, schema: DatasetSchema) -> tuple[tuple[str, str, tuple[Scalar, ...]], ...]:
    group = tree.args.get("group")
    grouped = list(group.expressions) if group else []
    keys = []
    for expression in grouped:
        if not isinstance(expression, exp.Column):
            raise _unsupported("a differentially private query groups by plain columns only")
        spec = schema.column(expression.name)
        if spec is None or spec.domain is None:
            raise _unsupported(
                "GROUP BY needs a column with a declared public domain (DP key selection is not available yet)", expression.name
            )
        keys.append((expression.name, tuple(spec.domain)))
    names: dict[str, str] = {}
    for projection in tree.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(inner, exp.Column):
            names[inner.name] = projection.alias_or_name
    return tuple((names.get(column, column), column, domain) for column, domain in keys)


def _aggregates(tree: exp.Select, plan: QueryPlan, schema: DatasetSchema) -> tuple[DPAggregate, ...]:
    found = []
    for projection, output in zip(tree.expressions, plan.outputs, strict=True):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if output.kind is OutputKind.GROUP_KEY:
            if not isinstance(inner, exp.Column):
                raise _unsupported("a group key is output as the plain column", output.name)
            continue
        found.append(_aggregate(inner, output.name, schema))
    if not found:
        raise _unsupported("a differentially private query outputs at least one aggregate")
    return tuple(found)


def _aggregate(node: exp.Expression, name: str, schema: DatasetSchema) -> DPAggregate:
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
        return DPAggregate(name, Aggregate.COUNT, None)
    kinds: dict[type[exp.Expression], Aggregate] = {exp.Sum: Aggregate.SUM, exp.Avg: Aggregate.AVG}
    kind = kinds.get(type(node))
    if kind is None or not isinstance(node.this, exp.Column):
        raise _unsupported("differentially private outputs are COUNT(*), SUM(column) or AVG(column)", name)
    spec = schema.column(node.this.name)
    if spec is None or spec.bounds is None:
        raise _unsupported("a summed or averaged column needs declared bounds", node.this.name)
    return DPAggregate(name, kind, node.this.name, float(spec.bounds.lower), float(spec.bounds.upper))


def _cells_sql(
    tree: exp.Select,
    table: exp.Table,
    unit: str,
    keys: tuple[tuple[str, str, tuple[Scalar, ...]], ...],
    aggregates: tuple[DPAggregate, ...],
    max_rows: int,
) -> str:
    """Cap each unit to ``max_rows`` rows (a random choice), clamp measures to their bounds, count and sum per cell."""
    alias = table.alias_or_name
    measures = {a.measure: a for a in aggregates if a.measure is not None}
    inner = [exp.column(column, table=alias).as_(f"__dp_key_{i}") for i, (_, column, _) in enumerate(keys)]
    for measure, agg in measures.items():
        value = exp.column(measure, table=alias)
        clamped = exp.func("GREATEST", exp.func("LEAST", value, exp.Literal.number(agg.upper)), exp.Literal.number(agg.lower))
        inner.append(clamped.as_(f"__dp_m_{measure}"))
    inner.append(exp.column(unit, table=alias).as_("__dp_unit"))
    inner.append(exp.func("RANDOM").as_("__dp_rand"))  # DuckDB refuses a volatile window ORDER BY: draw it first
    base = exp.select(*inner).from_(table.copy())
    where = tree.args.get("where")
    if where is not None:
        base = base.where(where.this.copy())
    window = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("__dp_unit")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("__dp_rand"))]),
    )
    capped = exp.select(exp.Star(), window.as_(ROW_NUMBER)).from_(base.subquery("__dp_rows"))
    key_names = [f"__dp_key_{i}" for i in range(len(keys))]
    outer: list[exp.Expr] = [exp.column(k).as_(f"__dp_key_{i}") for i, k in enumerate(key_names)]
    outer.append(exp.Count(this=exp.Star()).as_(COUNT))
    for measure, agg in measures.items():
        outer.append(exp.Sum(this=exp.column(f"__dp_m_{measure}")).as_(agg.sum_column))
        outer.append(exp.Count(this=exp.column(f"__dp_m_{measure}")).as_(agg.count_column))
    query = (
        exp.select(*outer)
        .from_(capped.subquery("__dp_capped"))
        .where(exp.LTE(this=exp.column(ROW_NUMBER), expression=exp.Literal.number(max_rows)))
    )
    if key_names:
        query = query.group_by(*[exp.column(k) for k in key_names])
    return query.sql(dialect=DIALECT)


@dataclass(frozen=True)
class DPAnswer:
    """The noisy cells (every combination of the keys' domains) and each released value's error."""

    table: pa.Table
    errors: dict[str, list[dp.NoisyValue]]  # by output column, one per row
    epsilon_each: Epsilon  # the share of the job's epsilon each aggregate spent


def answer(plan: DPPlan, cells: pa.Table, epsilon: Epsilon, max_rows: int) -> DPAnswer:
    """Noise the exact cells of ``plan.sql``: the job's epsilon split evenly over the aggregates (sequential composition).

    Cells absent from the data are counted as 0, never omitted: an omitted cell would say that no
    unit has that key.
    """
    found = _by_key(cells, len(plan.keys))
    grid = list(itertools.product(*[domain for _, _, domain in plan.keys]))
    empty = {COUNT: 0} | {c: 0 for a in plan.aggregates if a.measure for c in (a.sum_column, a.count_column)}
    rows = [found.get(key, empty) for key in grid]
    each = epsilon.split(len(plan.aggregates))
    columns: dict[str, list[Any]] = {name: [key[i] for key in grid] for i, (name, _, _) in enumerate(plan.keys)}
    errors: dict[str, list[dp.NoisyValue]] = {}
    for agg in plan.aggregates:
        errors[agg.name] = _noise(agg, rows, each, max_rows)
        columns[agg.name] = [v.value for v in errors[agg.name]]
    return DPAnswer(pa.table(columns), errors, each)


def _by_key(cells: pa.Table, keys: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    records = cells.to_pylist()
    return {tuple(r[f"__dp_key_{i}"] for i in range(keys)): {k: (v or 0) for k, v in r.items()} for r in records}


def _noise(agg: DPAggregate, rows: list[dict[str, Any]], epsilon: Epsilon, max_rows: int) -> list[dp.NoisyValue]:
    if agg.aggregate is Aggregate.COUNT:
        return dp.noisy_counts([int(r[COUNT]) for r in rows], epsilon, max_rows)
    sums = [float(r[agg.sum_column]) for r in rows]
    if agg.aggregate is Aggregate.SUM:
        return dp.noisy_sums(sums, epsilon, max_rows, agg.lower, agg.upper)
    means, _ = dp.noisy_means(sums, [int(r[agg.count_column]) for r in rows], epsilon, max_rows, agg.lower, agg.upper)
    return means
