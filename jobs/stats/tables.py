"""Planners of the grouped table ops: crosstab, pivot, quantiles and describe.

Each checks its columns against the policy (``Scope``), names its outputs, and builds one DuckDB
query through ``cells``. Results are in long format: dimension columns, one column per aggregate
output, then the evidence columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from core.errors import ValidationFailed
from jobs.stats.cells import DIALECT, Cell, CellQuery, cell_sql, col, lit, named
from jobs.stats.columns import Scope
from jobs.stats.specs import AGGREGATE_OF, CrosstabSpec, DescribeSpec, PivotSpec, QuantilesSpec
from jobs.stats.values import StatsPlan
from policies.model import Aggregate

POSITION = "__position"  # orders stacked parts; not an output, dropped before the result leaves SQL

_DESCRIBE: dict[str, tuple[Aggregate, float | None]] = {
    "count": (Aggregate.COUNT, None),
    "mean": (Aggregate.AVG, None),
    "std": (Aggregate.STDDEV, None),
    "min": (Aggregate.MIN, None),
    "25%": (Aggregate.QUANTILE, 0.25),
    "50%": (Aggregate.QUANTILE, 0.5),
    "75%": (Aggregate.QUANTILE, 0.75),
    "max": (Aggregate.MAX, None),
}


def top_n(scope: Scope) -> int:
    """The dominance rules look at the n largest contributors; the p-ratio rule at the two largest."""
    return max(scope.policy.disclosure.nk_n, 2)


def grouped_plan(op: str, scope: Scope, dimensions: Sequence[str], cells: Sequence[Cell], margins: bool) -> StatsPlan:
    """Check the dimensions, refuse output names that clash with them, and build the cells query."""
    specs = [scope.dimension(dimension) for dimension in dimensions]
    scope.aggregates(cell.aggregate for cell in cells)
    clash = sorted({cell.name for cell in cells} & set(dimensions))
    if clash:
        raise ValidationFailed(f"output {clash[0]} has the name of a dimension", details={"field": "spec", "column": clash[0]})
    query = CellQuery(
        scope.dataset, scope.privacy_unit, tuple(dimensions), tuple(cells), margins, top_n(scope), scope.unique_units, scope.rounding
    )
    return StatsPlan(
        op=op,
        dataset=scope.dataset,
        outputs=tuple((cell.name, cell.aggregate) for cell in cells),
        dimensions=tuple(dimensions),
        margins=margins and bool(dimensions),
        sql=cell_sql(query).sql(dialect=DIALECT),
        key_domains=tuple(None if spec.domain is None else tuple(spec.domain) for spec in specs),
        arguments=tuple(cell.argument for cell in cells),
    )


def plan_crosstab(spec: CrosstabSpec, scope: Scope) -> StatsPlan:
    """Counts per cell, or each ``aggfunc`` of ``values``: outputs ``count`` or ``<func>_<values>``."""
    if spec.values is None:
        cells = [Cell("count", Aggregate.COUNT)]
    else:
        scope.measure(spec.values)
        cells = [Cell(f"{func}_{spec.values}", AGGREGATE_OF[func], spec.values) for func in spec.aggfunc]
    return grouped_plan("crosstab", scope, [*spec.index, *spec.columns], cells, spec.margins)


def plan_pivot(spec: PivotSpec, scope: Scope) -> StatsPlan:
    """Every ``aggfunc`` of every value column: outputs ``<func>_<value>``, functions outermost."""
    for value in spec.values:
        scope.measure(value)
    cells = [Cell(f"{func}_{value}", AGGREGATE_OF[func], value) for func in spec.aggfunc for value in spec.values]
    return grouped_plan("pivot", scope, [*spec.index, *spec.columns], cells, spec.margins)


def plan_quantiles(spec: QuantilesSpec, scope: Scope) -> StatsPlan:
    """Linear-interpolated quantiles (pandas' default) of one measure, optionally by dimensions: ``quantile_<q>``."""
    scope.measure(spec.column)
    cells = [Cell(f"quantile_{q:g}", Aggregate.QUANTILE, spec.column, q) for q in spec.q]
    return grouped_plan("quantiles", scope, spec.by, cells, spec.margins)


def plan_describe(spec: DescribeSpec, scope: Scope) -> StatsPlan:
    """pandas' ``describe()``: one row per column (dimension ``variable``), one output per statistic.

    Each row carries its units and missing counts, the magnitude evidence of its mean, and
    below/above counts for min, quartiles and max, so that output control can refuse order
    statistics that sit on too few units (a minimum is one person's value).
    """
    for column in spec.columns:
        scope.measure(column)
    statistics = [s for s in _DESCRIBE if s in spec.statistics]
    scope.aggregates(_DESCRIBE[s][0] for s in statistics)
    parts: list[exp.Select] = []
    for column in spec.columns:
        cells = tuple(Cell(s, _DESCRIBE[s][0], column, _DESCRIBE[s][1]) for s in statistics)
        query = CellQuery(
            scope.dataset, scope.privacy_unit, (), cells, top_n=top_n(scope), unique_units=scope.unique_units, rounding=scope.rounding
        )
        parts.append(cell_sql(query))
    return StatsPlan(
        op="describe",
        dataset=scope.dataset,
        outputs=tuple((s, _DESCRIBE[s][0]) for s in statistics),
        dimensions=("variable",),
        margins=False,
        sql=stacked(parts, [[("variable", column)] for column in spec.columns]).sql(dialect=DIALECT),
    )


def stacked(parts: Sequence[exp.Select], rows: Sequence[Sequence[tuple[str, str]]]) -> exp.Select:
    """UNION ALL of ``parts`` in the given order, each prefixed with its literal label columns ``(name, value)``."""
    columns = [name for name, _ in rows[0]] + list(parts[0].named_selects)
    union: exp.Query | None = None
    for position, (part, row) in enumerate(zip(parts, rows, strict=True)):
        items: list[exp.Expr] = [named(lit(value), name) for name, value in row]
        items += [named(lit(position), POSITION), exp.Star()]
        branch = exp.select(*items).from_(part.subquery(f"__part{position}"))
        union = branch if union is None else exp.union(union, branch, distinct=False)
    assert union is not None
    return exp.select(*[col(name) for name in columns]).from_(union.subquery("__stacked")).order_by(col(POSITION))
