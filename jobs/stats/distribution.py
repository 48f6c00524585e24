"""Planners of the histogram and of pairwise correlations.

A histogram's edges are public by construction: given in the spec, or equal-width over the
column's declared bounds. Edges taken from the data's own minimum and maximum would disclose
those two values (often one person's each), so there is no such option. Bins are numpy's:
``[lower, upper)``, the last one closed; every bin is a row, empty ones included (count 0).
"""

from __future__ import annotations

from itertools import combinations, pairwise

from sqlglot import exp

from jobs.stats.cells import DIALECT, UNIT, col, filtered, lit, named, table, units
from jobs.stats.columns import Scope
from jobs.stats.specs import CorrelationSpec, HistogramSpec
from jobs.stats.tables import stacked
from jobs.stats.values import UNITS_COLUMN, StatsPlan, StatsRule, violation
from policies.evidence import missing_column
from policies.model import Aggregate


def histogram_edges(spec: HistogramSpec, scope: Scope) -> list[float]:
    """The declared edges, or ``bins`` equal-width bins over the column's declared bounds."""
    if isinstance(spec.bins, list):
        return spec.bins
    bounds = scope.schema.columns[spec.column].bounds
    if bounds is None:
        name = f"{scope.dataset}.{spec.column}"
        message = f"column {name} has no declared bounds: give the bin edges (bins from the data's own range would disclose it)"
        raise violation(StatsRule.DATA_DERIVED_BINS, message, name)
    width = (bounds.upper - bounds.lower) / spec.bins
    return [bounds.lower + i * width for i in range(spec.bins)] + [bounds.upper]


def plan_histogram(spec: HistogramSpec, scope: Scope) -> StatsPlan:
    """Counts per bin with distinct units: dimensions ``lower`` and ``upper``, output ``count``."""
    column = scope.dimension(spec.column, binned=True)
    if not column.type.numeric:
        name = f"{scope.dataset}.{spec.column}"
        raise violation(StatsRule.NOT_NUMERIC, f"column {name} is {column.type.value}, not numeric", name)
    scope.aggregates([Aggregate.COUNT])
    edges = histogram_edges(spec, scope)
    rows = [
        exp.Tuple(expressions=[lit(i), _double(low), _double(high), exp.Boolean(this=i == len(edges) - 2)])
        for i, (low, high) in enumerate(pairwise(edges))
    ]
    bins = exp.select("*").from_(exp.Values(expressions=rows, alias=exp.TableAlias(this=exp.to_identifier("__v"), columns=[
        exp.to_identifier(name) for name in ("__bin", "lower", "upper", "__last")
    ])))  # fmt: skip
    value = exp.cast(col(spec.column), exp.DataType.Type.DOUBLE)
    base = exp.select(named(value, "__x"), named(col(scope.privacy_unit), UNIT)).from_(table(scope.dataset))
    base = base.where(exp.Not(this=exp.Is(this=col(spec.column), expression=exp.Null())))
    inside = exp.and_(
        exp.GTE(this=col("__x", "x"), expression=col("lower", "b")),
        exp.Paren(
            this=exp.or_(
                exp.LT(this=col("__x", "x"), expression=col("upper", "b")),
                exp.and_(col("__last", "b"), exp.EQ(this=col("__x", "x"), expression=col("upper", "b"))),
            )
        ),
    )
    select = (
        exp.select(
            named(col("lower", "b"), "lower"),
            named(col("upper", "b"), "upper"),
            named(exp.Count(this=col("__x", "x")), "count"),
            named(units(col(UNIT, "x")), UNITS_COLUMN),
        )
        .from_(table("__bins", "b"))
        .join(table("__base", "x"), on=inside, join_type="left")
        .group_by(col("__bin", "b"), col("lower", "b"), col("upper", "b"))
        .order_by(col("__bin", "b"))
        .with_("__bins", as_=bins)
        .with_("__base", as_=base)
    )
    return StatsPlan("histogram", scope.dataset, (("count", Aggregate.COUNT),), ("lower", "upper"), False, select.sql(dialect=DIALECT))


def _double(value: float) -> exp.Expr:
    """An edge as DOUBLE, parsed from its exact text (a bare literal would be DECIMAL in DuckDB)."""
    return exp.cast(exp.Literal.string(repr(float(value))), exp.DataType.Type.DOUBLE)


def plan_correlation(spec: CorrelationSpec, scope: Scope) -> StatsPlan:
    """Pearson's r for every pair of measures, over the pair's complete cases: rows ``(var1, var2, r)``.

    Needs ``avg`` and ``stddev`` in the policy (r is a mean of standardised products). Each row
    carries the distinct units of the pair's complete cases and the rows left out as missing.
    """
    for column in spec.columns:
        scope.measure(column)
    scope.aggregates([Aggregate.AVG, Aggregate.STDDEV])
    scope.not_rounded("a correlation")
    parts: list[exp.Select] = []
    labels: list[list[tuple[str, str]]] = []
    for first, second in combinations(spec.columns, 2):
        a, b = col(first), col(second)
        both = exp.and_(exp.Not(this=exp.Is(this=a, expression=exp.Null())), exp.Not(this=exp.Is(this=b, expression=exp.Null())))
        double = exp.DataType.Type.DOUBLE
        r = exp.Corr(this=exp.cast(a.copy(), double), expression=exp.cast(b.copy(), double))
        part = exp.select(
            named(r, "r"),
            named(filtered(units(col(scope.privacy_unit)), both), UNITS_COLUMN),
            named(filtered(exp.Count(this=exp.Star()), exp.Not(this=exp.Paren(this=both.copy()))), missing_column("r")),
        ).from_(table(scope.dataset))
        parts.append(part)
        labels.append([("var1", first), ("var2", second)])
    sql = stacked(parts, labels).sql(dialect=DIALECT)
    return StatsPlan("correlation", scope.dataset, (("r", Aggregate.AVG),), ("var1", "var2"), False, sql)
