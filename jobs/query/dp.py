"""Differentially private answers to a validated query: which shapes qualify, and the SQL of their exact cells.

The slice supported: one dataset, no joins or subqueries, GROUP BY only plain columns with a declared
public domain, outputs that are those keys or COUNT(*), SUM(measure), AVG(measure), MEDIAN(measure),
QUANTILE_CONT(measure, q) or QUANTILE(measure, q) (a literal q strictly between 0 and 1) over a
measure with declared bounds. The cells are every combination of the keys' domains, so that which
keys occur in the data is never disclosed. ``cells_sql`` caps each unit's rows, clamps the measures
and sums per cell (for a quantile, lists the cell's clamped values); noise is added by
``policies.dp`` afterwards (a quantile: the exponential mechanism over evenly spaced candidates).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import sqlglot
from numpy.typing import NDArray
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
    aggregate: Aggregate  # COUNT, SUM, AVG, MEDIAN or QUANTILE
    measure: str | None  # the measured column (None for COUNT(*))
    lower: float = 0.0
    upper: float = 0.0
    alpha: float | None = None  # the quantile's fraction (MEDIAN: 0.5); None for the others

    @property
    def sum_column(self) -> str:
        return f"__dp_sum_{self.measure}"

    @property
    def count_column(self) -> str:
        return f"__dp_n_{self.measure}"

    @property
    def values_column(self) -> str:
        return f"__dp_values_{self.measure}"


@dataclass(frozen=True)
class DPPlan:
    dataset: str
    keys: tuple[tuple[str, str, tuple[Scalar, ...]], ...]  # (output name, column, declared domain)
    aggregates: tuple[DPAggregate, ...]
    sql: str  # the exact per-cell counts and sums, for the cells present in the data


def plan_dp(plan: QueryPlan, schemas: Mapping[str, DatasetSchema], max_rows: int, unique_units: frozenset[str] = frozenset()) -> DPPlan:
    """The DP form of a validated query, or ``PolicyViolation`` (rule ``dp_unsupported``) naming why not.

    ``unique_units`` names datasets in which every row is a different unit (the version's counts say
    so): there every unit already has one row, within any cap, so the per-unit capping pass is skipped.
    """
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
    capped = max_rows if dataset not in unique_units else None
    return DPPlan(dataset, keys, aggregates, _cells_sql(tree, table, schema.privacy_unit, keys, aggregates, capped))


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
    kind = _KINDS.get(type(node))  # exact classes, as in the allowlist: a subclass can mean another function
    if kind is None or not isinstance(node.this, exp.Column):
        raise _unsupported(
            "differentially private outputs are COUNT(*), SUM(column), AVG(column), MEDIAN(column) or QUANTILE_CONT(column, q)", name
        )
    spec = schema.column(node.this.name)
    if spec is None or spec.bounds is None:
        raise _unsupported("a summed, averaged or quantile column needs declared bounds", node.this.name)
    alpha = _fraction(node, name) if kind in (Aggregate.MEDIAN, Aggregate.QUANTILE) else None
    return DPAggregate(name, kind, node.this.name, float(spec.bounds.lower), float(spec.bounds.upper), alpha)


def _fraction(node: exp.Expression, name: str) -> float:
    """MEDIAN's 0.5, or a quantile's literal q, which must lie strictly between 0 and 1."""
    if isinstance(node, exp.Median):
        return 0.5
    argument = node.args.get(_FRACTION_ARG[type(node)])
    value = float(argument.to_py()) if isinstance(argument, exp.Literal) and argument.is_number else math.nan
    if not 0 < value < 1:  # NaN fails too
        raise _unsupported("a differentially private quantile takes a literal fraction strictly between 0 and 1", name)
    return value


def _cells_sql(
    tree: exp.Select,
    table: exp.Table,
    unit: str,
    keys: tuple[tuple[str, str, tuple[Scalar, ...]], ...],
    aggregates: tuple[DPAggregate, ...],
    max_rows: int | None,
) -> str:
    """Cap each unit to ``max_rows`` rows (a random choice; None: rows are units already), clamp measures, count and sum per cell.

    A measure some quantile reads is also listed per cell (``LIST`` of its clamped values, NULLs included:
    ``answer`` drops them). NULL stays NULL through the clamp (DuckDB's LEAST/GREATEST skip NULLs).
    """
    alias = table.alias_or_name
    measures = {a.measure: a for a in aggregates if a.measure is not None}
    listed = {a.measure for a in aggregates if a.measure is not None and a.alpha is not None}
    inner = [exp.column(column, table=alias).as_(f"__dp_key_{i}") for i, (_, column, _) in enumerate(keys)]
    for measure, agg in measures.items():
        value = exp.column(measure, table=alias)
        clamped = exp.func("GREATEST", exp.func("LEAST", value, exp.Literal.number(agg.upper)), exp.Literal.number(agg.lower))
        kept = exp.Case(ifs=[exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null())], default=clamped)
        inner.append(kept.as_(f"__dp_m_{measure}"))
    if max_rows is not None:
        inner.append(exp.column(unit, table=alias).as_("__dp_unit"))
        inner.append(exp.func("RANDOM").as_("__dp_rand"))  # DuckDB refuses a volatile window ORDER BY: draw it first
    if not inner:  # no key, no measure and no capping: COUNT(*) only needs the rows to exist
        inner.append(exp.Literal.number(1).as_("__dp_row_exists"))
    base = exp.select(*inner).from_(table.copy())
    where = tree.args.get("where")
    if where is not None:
        base = base.where(where.this.copy())
    key_names = [f"__dp_key_{i}" for i in range(len(keys))]
    outer: list[exp.Expr] = [exp.column(k).as_(f"__dp_key_{i}") for i, k in enumerate(key_names)]
    outer.append(exp.Count(this=exp.Star()).as_(COUNT))
    for measure, agg in measures.items():
        outer.append(exp.Sum(this=exp.column(f"__dp_m_{measure}")).as_(agg.sum_column))
        outer.append(exp.Count(this=exp.column(f"__dp_m_{measure}")).as_(agg.count_column))
        if measure in listed:
            outer.append(exp.func("LIST", exp.column(f"__dp_m_{measure}")).as_(agg.values_column))
    if max_rows is None:
        query = exp.select(*outer).from_(base.subquery("__dp_capped"))
    else:
        window = exp.Window(
            this=exp.RowNumber(),
            partition_by=[exp.column("__dp_unit")],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column("__dp_rand"))]),
        )
        capped = exp.select(exp.Star(), window.as_(ROW_NUMBER)).from_(base.subquery("__dp_rows"))
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
    errors: dict[str, list[dp.NoisyValue | dp.NoisyQuantile]]  # by output column, one per row
    epsilon_each: Epsilon  # the share of the job's epsilon each aggregate spent


def answer(plan: DPPlan, cells: pa.Table, epsilon: Epsilon, max_rows: int) -> DPAnswer:
    """Noise the exact cells of ``plan.sql``: the job's epsilon split evenly over the aggregates (sequential composition).

    Cells absent from the data are counted as 0, never omitted: an omitted cell would say that no
    unit has that key.
    """
    found = _by_key(cells, len(plan.keys))
    grid = list(itertools.product(*[domain for _, _, domain in plan.keys]))
    empty = {COUNT: 0} | {c: 0 for a in plan.aggregates if a.measure for c in (a.sum_column, a.count_column, a.values_column)}
    rows = [found.get(key, empty) for key in grid]
    each = epsilon.split(len(plan.aggregates))
    columns: dict[str, list[Any]] = {name: [key[i] for key in grid] for i, (name, _, _) in enumerate(plan.keys)}
    errors: dict[str, list[dp.NoisyValue | dp.NoisyQuantile]] = {}
    for agg in plan.aggregates:
        errors[agg.name] = _noise(agg, rows, each, max_rows)
        columns[agg.name] = [v.value for v in errors[agg.name]]
    return DPAnswer(pa.table(columns), errors, each)


def _by_key(cells: pa.Table, keys: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    records = cells.to_pylist()
    return {tuple(r[f"__dp_key_{i}"] for i in range(keys)): {k: (v or 0) for k, v in r.items()} for r in records}


def _noise(agg: DPAggregate, rows: list[dict[str, Any]], epsilon: Epsilon, max_rows: int) -> list[dp.NoisyValue | dp.NoisyQuantile]:
    if agg.aggregate is Aggregate.COUNT:
        return list(dp.noisy_counts([int(r[COUNT]) for r in rows], epsilon, max_rows))
    if agg.alpha is not None:
        # An empty cell (absent from the data, or all NULL) gets the mechanism over an empty array: a
        # candidate drawn uniformly at random, released like any other so its emptiness is not disclosed.
        values = [_values(r.get(agg.values_column)) for r in rows]
        return list(dp.noisy_quantiles(values, agg.alpha, epsilon, max_rows, agg.lower, agg.upper))
    sums = [float(r[agg.sum_column]) for r in rows]
    if agg.aggregate is Aggregate.SUM:
        return list(dp.noisy_sums(sums, epsilon, max_rows, agg.lower, agg.upper))
    means, _ = dp.noisy_means(sums, [int(r[agg.count_column]) for r in rows], epsilon, max_rows, agg.lower, agg.upper)
    return list(means)


def _values(listed: Any) -> NDArray[np.float64]:
    """A cell's clamped values from its ``LIST`` (``_by_key`` turns an absent or NULL list into 0), NULLs dropped."""
    items = listed if isinstance(listed, list) else []
    return np.asarray([float(v) for v in items if v is not None], dtype=np.float64)
