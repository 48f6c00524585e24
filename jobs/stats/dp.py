"""Differentially private statistics: histogram, crosstab, pivot, quantiles and describe as ``jobs.dp`` plans.

Each op is one DP table over its dataset, noised by ``jobs.dp.answer``:

* ``histogram``: rows per bin. The edges are the spec's or equal-width over the column's declared
  bounds, never the data's own range; every bin is released, empty ones too. A NULL or a value
  outside the edges is in no bin.
* ``crosstab`` and ``pivot``: per cell of the dimensions, ``count`` (rows; with ``values``, its
  non-NULL values), ``sum``, ``mean`` or ``median`` of measures with declared bounds. ``std``,
  ``var``, ``min`` and ``max`` have no DP form here and are refused.
* ``quantiles``: each ``q`` by the exponential mechanism, per cell of the ``by`` dimensions.
* ``describe``: per column, ``count`` (non-NULL values), ``mean`` and the quartiles ``25%``, ``50%``,
  ``75%``; ``std``, ``min`` and ``max`` are refused (a minimum or maximum is one unit's value).

A dimension with a declared domain releases every value of it; one without is released only for the
values DP key selection chooses, which needs the grant's δ. The job's ε is split evenly over every
released aggregate, plus one share for key selection when it runs: describe of two columns with
count and mean is four releases. **Margins are omitted** on DP grants: each would be a further
release needing its own share of ε, while the analyst can sum the released noisy cells (post-
processing, which costs no budget); the summary says so. ``correlation``, ``ols`` and ``logit``
have no DP form and are refused with rule ``dp_unsupported``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import pyarrow as pa
from sqlglot import exp

from core.schema import DatasetSchema
from jobs.dp.answer import DPAnswer
from jobs.dp.plan import DPAggregate, DPKey, DPPlan, Source, build, unsupported
from jobs.stats import plan as checked_plan
from jobs.stats.cells import table
from jobs.stats.columns import Scope
from jobs.stats.distribution import histogram_edges
from jobs.stats.specs import CrosstabSpec, DescribeSpec, HistogramSpec, PivotSpec, QuantilesSpec, parse_spec
from policies.model import Aggregate, Policy

BIN = "__bin"
_FUNCS: dict[str, tuple[Aggregate, float | None]] = {
    "count": (Aggregate.COUNT, None),
    "sum": (Aggregate.SUM, None),
    "mean": (Aggregate.AVG, None),
    "median": (Aggregate.MEDIAN, 0.5),
}
_DESCRIBE: dict[str, tuple[Aggregate, float | None]] = {
    "count": (Aggregate.COUNT, None),
    "mean": (Aggregate.AVG, None),
    "25%": (Aggregate.QUANTILE, 0.25),
    "50%": (Aggregate.QUANTILE, 0.5),
    "75%": (Aggregate.QUANTILE, 0.75),
}


@dataclass(frozen=True)
class DPStats:
    """A statistics spec's DP table and how its noisy answer is laid out for release."""

    op: str
    dataset: str
    plan: DPPlan
    dimensions: tuple[str, ...]  # the released key columns
    edges: tuple[float, ...] = ()  # histogram: bin i is [edges[i], edges[i + 1]), the last one closed
    describe: tuple[tuple[str, str, str], ...] = ()  # describe: (aggregate column, variable, statistic)
    margins_omitted: bool = False  # the spec asked for margins, which DP releases do not include


def plan_dp(
    spec: Mapping[str, Any],
    policy: Policy,
    schemas: Mapping[str, DatasetSchema],
    max_rows: int,
    unique_units: frozenset[str] = frozenset(),
    *,
    key_selection: bool = False,
) -> DPStats:
    """The DP form of a statistics spec, after the checks every stats job passes; ``PolicyViolation`` if it has none.

    ``key_selection`` says whether the grant has a δ to select the values of a dimension without a
    declared domain; ``unique_units`` skips the capping pass where every row is a different unit.
    """
    parsed = parse_spec(spec)
    if not isinstance(parsed, HistogramSpec | CrosstabSpec | PivotSpec | QuantilesSpec | DescribeSpec):
        raise unsupported(f"{parsed.op} has no differentially private form: on a DP grant, stats jobs are histogram, crosstab, "
                          "pivot, quantiles and describe")  # fmt: skip
    if isinstance(parsed, DescribeSpec):
        refused = [s for s in parsed.statistics if s not in _DESCRIBE]
        if refused:
            raise unsupported(f"describe on a DP grant releases count, mean, 25%, 50% and 75% only, not {', '.join(refused)}")
    checked_plan(spec, policy, schemas, unique_units)  # columns, uses and aggregates, as without DP
    scope = Scope.of(parsed.dataset, policy, schemas, unique_units)
    source = Source(table(scope.dataset), scope.dataset, scope.privacy_unit)
    capped = None if scope.unique_units else max_rows
    if isinstance(parsed, HistogramSpec):
        return _histogram(parsed, scope, source, capped)
    if isinstance(parsed, DescribeSpec):
        return _describe(parsed, scope, source, capped)
    if isinstance(parsed, QuantilesSpec):
        measure = _bounded(scope, parsed.column)
        aggregates = [DPAggregate(f"quantile_{q:g}", Aggregate.QUANTILE, parsed.column, *measure, q) for q in parsed.q]
        dims = list(parsed.by)
    else:
        values = [parsed.values] if isinstance(parsed.values, str) else list(parsed.values or [])
        aggregates = _grouped(parsed, scope, values)
        dims = [*parsed.index, *parsed.columns]
    keys = [_key(scope, source, dim, key_selection) for dim in dims]
    plan = build(scope.dataset, source, keys, aggregates, capped)
    return DPStats(parsed.op, scope.dataset, plan, tuple(dims), margins_omitted=parsed.margins and bool(dims))


def _grouped(spec: CrosstabSpec | PivotSpec, scope: Scope, values: list[str]) -> list[DPAggregate]:
    """Crosstab and pivot cells: rows counted, or each function of each value column (functions outermost, as pivot names them)."""
    if not values:
        return [DPAggregate("count", Aggregate.COUNT, None)]
    refused = [func for func in spec.aggfunc if func not in _FUNCS]
    if refused:
        raise unsupported(f"on a DP grant, aggfunc is count, sum, mean or median, not {', '.join(refused)}")
    bounds = {value: _bounded(scope, value) for value in values}
    return [
        DPAggregate(f"{func}_{value}", _FUNCS[func][0], value, *bounds[value], _FUNCS[func][1]) for func in spec.aggfunc for value in values
    ]


def _histogram(spec: HistogramSpec, scope: Scope, source: Source, max_rows: int | None) -> DPStats:
    edges = tuple(histogram_edges(spec, scope))
    value = exp.cast(source.column(spec.column), exp.DataType.Type.DOUBLE)
    last = len(edges) - 2
    ifs = []
    for i, (low, high) in enumerate(pairwise(edges)):
        below: exp.Expr = (
            exp.LTE(this=value.copy(), expression=_double(high)) if i == last else exp.LT(this=value.copy(), expression=_double(high))
        )
        inside = exp.and_(exp.GTE(this=value.copy(), expression=_double(low)), below)
        ifs.append(exp.If(this=inside, true=exp.Literal.number(i)))
    key = DPKey(BIN, exp.Case(ifs=ifs), tuple(range(len(edges) - 1)))
    plan = build(scope.dataset, source, [key], [DPAggregate("count", Aggregate.COUNT, None)], max_rows)
    return DPStats("histogram", scope.dataset, plan, ("lower", "upper"), edges=edges)


def _describe(spec: DescribeSpec, scope: Scope, source: Source, max_rows: int | None) -> DPStats:
    statistics = [s for s in _DESCRIBE if s in spec.statistics]
    aggregates: list[DPAggregate] = []
    layout: list[tuple[str, str, str]] = []
    for column in spec.columns:
        bounds = _bounded(scope, column)
        for statistic in statistics:
            name = f"__describe_{len(aggregates)}"
            kind, alpha = _DESCRIBE[statistic]
            aggregates.append(DPAggregate(name, kind, column, *bounds, alpha))
            layout.append((name, column, statistic))
    plan = build(scope.dataset, source, [], aggregates, max_rows)
    return DPStats("describe", scope.dataset, plan, ("variable",), describe=tuple(layout))


def _key(scope: Scope, source: Source, column: str, key_selection: bool) -> DPKey:
    domain = scope.schema.columns[column].domain
    if domain is None and not key_selection:
        name = f"{scope.dataset}.{column}"
        raise unsupported(
            f"column {name} has no declared public domain, and the grant's policy has no delta for DP key selection:"
            " a declared domain or a delta is needed",
            name,
        )
    return DPKey(column, source.column(column), None if domain is None else tuple(domain))


def _bounded(scope: Scope, column: str) -> tuple[float, float]:
    bounds = scope.schema.columns[column].bounds
    if bounds is None:
        name = f"{scope.dataset}.{column}"
        raise unsupported(f"column {name} needs declared bounds to be aggregated on a DP grant", name)
    return float(bounds.lower), float(bounds.upper)


def _double(value: float) -> exp.Expr:
    """An edge as DOUBLE, parsed from its exact text (a bare literal would be DECIMAL in DuckDB)."""
    return exp.cast(exp.Literal.string(repr(float(value))), exp.DataType.Type.DOUBLE)


def shape(form: DPStats, noisy: DPAnswer) -> DPAnswer:
    """Lay the noisy table out as the op releases it: bins as their edges, describe one row per column."""
    if form.edges:
        bins = noisy.table.column(BIN).to_pylist()
        lower = pa.array([form.edges[b] for b in bins], pa.float64())
        upper = pa.array([form.edges[b + 1] for b in bins], pa.float64())
        rest = {n: noisy.table.column(n) for n in noisy.table.column_names if n != BIN}
        return replace(noisy, table=pa.table({"lower": lower, "upper": upper, **rest}))
    if form.describe:
        variables = list(dict.fromkeys(variable for _, variable, _ in form.describe))
        statistics = list(dict.fromkeys(statistic for _, _, statistic in form.describe))
        where = {(variable, statistic): name for name, variable, statistic in form.describe}
        errors = {s: [noisy.errors[where[v, s]][0] for v in variables] for s in statistics}
        columns: dict[str, list[Any]] = {"variable": variables} | {s: [e.value for e in errors[s]] for s in statistics}
        return replace(noisy, table=pa.table(columns), errors=dict(errors))
    return noisy
