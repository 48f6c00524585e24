"""The SQL of grouped statistics: aggregate cells per dimension combination, with their evidence.

One query, built as sqlglot expressions (names are quoted identifiers, never spliced text):

``__base``        the dimensions as ``__d<i>``, each aggregated column as DOUBLE ``__v<j>``, and the
                  privacy unit as ``__pu``; nothing else of the table is read
``__cells``       the aggregates, ``__units_0`` (distinct units behind the cell) and
                  ``__missing_<c>``; with margins, GROUPING SETS over every subset of the
                  dimensions and the ``__grouping`` bitmask
``__magnitude``   for sums and means, from per-unit totals within each cell: ``__top_<c>``,
                  ``__total_<c>``, ``__neg_<c>``
``__order``       for order statistics, units whose value is <= / >= the cell's released value
                  (``__below_<c>``, ``__above_<c>``), by joining each cell back to its rows

The evidence names follow ``policies.evidence``; output control reads them and drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from jobs.stats.values import UNITS_COLUMN
from policies.evidence import (
    GROUPING_COLUMN,
    MAGNITUDE,
    ORDER_STATISTICS,
    ROUNDING_COMPONENTS,
    above_column,
    below_column,
    component_column,
    missing_column,
    negative_column,
    top_column,
    total_column,
)
from policies.model import Aggregate

UNIT = "__pu"
DIALECT = "duckdb"


@dataclass(frozen=True)
class Cell:
    """One aggregate output column: its name, aggregate, source column (None: COUNT(*)) and quantile."""

    name: str
    aggregate: Aggregate
    argument: str | None = None
    q: float | None = None


@dataclass(frozen=True)
class CellQuery:
    dataset: str
    privacy_unit: str
    dimensions: tuple[str, ...]  # grouped columns; each is also its output name
    cells: tuple[Cell, ...]
    margins: bool = False
    top_n: int = 2  # how many of the largest per-unit totals the dominance rules get
    # Every row is a different privacy unit: units are rows and per-unit totals are the values
    # themselves, so the distinct counts and the per-unit grouping can be skipped (same numbers).
    unique_units: bool = False
    # The policy rounds its results: means and spreads carry the components output control derives them from.
    rounding: bool = False

    @property
    def rows_are_units(self) -> bool:
        """The shortcut holds without margins; with GROUPING SETS the general form is kept."""
        return self.unique_units and not self.grouped

    @property
    def arguments(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(cell.argument for cell in self.cells if cell.argument is not None))

    def value(self, cell: Cell) -> str:
        assert cell.argument is not None
        return f"__v{self.arguments.index(cell.argument)}"

    @property
    def keys(self) -> list[str]:
        return [f"__d{i}" for i in range(len(self.dimensions))]

    @property
    def grouped(self) -> bool:
        """Margins need GROUPING SETS and the ``__grouping`` column; without dimensions there is nothing to sum away."""
        return self.margins and bool(self.dimensions)


def col(name: str, table: str | None = None) -> exp.Expr:
    return exp.column(name, table=table, quoted=True)


def lit(value: float | str) -> exp.Expr:
    return exp.Literal.string(value) if isinstance(value, str) else exp.Literal.number(value)


def table(name: str, alias: str | None = None) -> exp.Table:
    node = exp.Table(this=exp.to_identifier(name, quoted=True))
    if alias is not None:
        node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return node


def named(node: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(node, name, quoted=True)


def filtered(aggregate: exp.Expr, condition: exp.Expr) -> exp.Filter:
    return exp.Filter(this=aggregate, expression=exp.Where(this=condition))


def units(unit: exp.Expr) -> exp.Count:
    return exp.Count(this=exp.Distinct(expressions=[unit]))


def aggregate_sql(cell: Cell, value: exp.Expr | None) -> exp.Expr:
    """The DuckDB aggregate of a cell; quantiles interpolate linearly, as pandas does."""
    if value is None:
        assert cell.aggregate is Aggregate.COUNT
        return exp.Count(this=exp.Star())
    simple: dict[Aggregate, type[exp.Func]] = {
        Aggregate.COUNT: exp.Count,
        Aggregate.SUM: exp.Sum,
        Aggregate.AVG: exp.Avg,
        Aggregate.MEDIAN: exp.Median,
        Aggregate.STDDEV: exp.StddevSamp,
        Aggregate.VARIANCE: exp.Variance,
        Aggregate.MIN: exp.Min,
        Aggregate.MAX: exp.Max,
    }
    if cell.aggregate is Aggregate.QUANTILE:
        assert cell.q is not None
        return exp.PercentileCont(this=value, expression=lit(cell.q))
    return simple[cell.aggregate](this=value)


def cell_sql(query: CellQuery) -> exp.Select:
    """The whole query: one row per cell (and per margin), dimensions first, then outputs and evidence."""
    magnitude = [cell for cell in query.cells if cell.aggregate in MAGNITUDE]
    order = [cell for cell in query.cells if cell.aggregate in ORDER_STATISTICS]
    projection: list[exp.Expr] = [named(col(key, "c"), dim) for key, dim in zip(query.keys, query.dimensions, strict=True)]
    if query.grouped:
        projection.append(named(col(GROUPING_COLUMN, "c"), GROUPING_COLUMN))
    projection += [named(col(cell.name, "c"), cell.name) for cell in query.cells]
    projection.append(named(col(UNITS_COLUMN, "c"), UNITS_COLUMN))
    projection += [named(col(missing_column(c.name), "c"), missing_column(c.name)) for c in query.cells if c.argument is not None]
    projection += [named(col(name, "c"), name) for _, name, _ in _components(query)]
    for cell in magnitude:
        projection += [named(col(name(cell.name), "m"), name(cell.name)) for name in (top_column, total_column, negative_column)]
    for cell in order:
        projection += [named(col(name(cell.name), "o"), name(cell.name)) for name in (below_column, above_column)]
    select = exp.select(*projection).from_(table("__cells", "c"))
    if magnitude:
        select = select.join(table("__magnitude", "m"), on=_same_cell(query, "c", "m"), join_type="left")
    if order:
        select = select.join(table("__order", "o"), on=_same_cell(query, "c", "o"), join_type="left")
    ordering = ([col(GROUPING_COLUMN, "c")] if query.grouped else []) + [col(key, "c") for key in query.keys]
    if ordering:
        select = select.order_by(*ordering)
    select = select.with_("__base", as_=_base(query)).with_("__cells", as_=_cells(query))
    if magnitude:
        select = select.with_("__unit_totals", as_=_unit_totals(query, magnitude)).with_("__magnitude", as_=_magnitude(query, magnitude))
    if order:
        select = select.with_("__order", as_=_order(query, order))
    return select


def _base(query: CellQuery) -> exp.Select:
    items: list[exp.Expr] = [named(col(dim), key) for dim, key in zip(query.dimensions, query.keys, strict=True)]
    items += [named(exp.cast(col(arg), exp.DataType.Type.DOUBLE), f"__v{j}") for j, arg in enumerate(query.arguments)]
    items.append(named(col(query.privacy_unit), UNIT))
    return exp.select(*items).from_(table(query.dataset))


def _group(select: exp.Select, query: CellQuery, extra: Sequence[str] = ()) -> exp.Select:
    """GROUP BY the dimensions (plus ``extra`` keys kept in every set); with margins, every subset of them."""
    keys = query.keys
    if query.grouped:
        sets = [exp.Tuple(expressions=[col(k) for k in _kept(keys, mask)] + [col(e) for e in extra]) for mask in range(2 ** len(keys))]
        select = select.select(named(exp.Grouping(expressions=[col(k) for k in keys]), GROUPING_COLUMN))
        return select.group_by(exp.GroupingSets(expressions=sets))
    if keys or extra:
        return select.group_by(*[col(k) for k in [*keys, *extra]])
    return select


def _kept(keys: Sequence[str], mask: int) -> list[str]:
    """The keys a grouping set keeps: bit ``len(keys)-1-i`` of ``mask`` set means key i is summed away (GROUPING's order)."""
    return [key for i, key in enumerate(keys) if not mask & (1 << (len(keys) - 1 - i))]


def _cells(query: CellQuery) -> exp.Select:
    items: list[exp.Expr] = [col(k) for k in query.keys]
    for cell in query.cells:
        value = col(query.value(cell)) if cell.argument is not None else None
        items.append(named(aggregate_sql(cell, value), cell.name))
    items.append(named(exp.Count(this=exp.Star()) if query.rows_are_units else units(col(UNIT)), UNITS_COLUMN))
    for cell in query.cells:
        if cell.argument is not None:
            missing = filtered(exp.Count(this=exp.Star()), exp.Is(this=col(query.value(cell)), expression=exp.Null()))
            items.append(named(missing, missing_column(cell.name)))
    for component, name, value in _components(query):
        aggregate: exp.Expr = exp.Count(this=value) if component == "count" else exp.Sum(this=value)
        if component == "sumsq":
            aggregate = exp.Sum(this=exp.Mul(this=value, expression=value.copy()))
        items.append(named(aggregate, name))
    return _group(exp.select(*items).from_(table("__base")), query)


def _components(query: CellQuery) -> list[tuple[str, str, exp.Expr]]:
    """Under rounding, ``(component, column, DOUBLE value)`` of every mean and spread (``policies.evidence``)."""
    if not query.rounding:
        return []
    found = []
    for cell in query.cells:
        for component in ROUNDING_COMPONENTS.get(cell.aggregate, ()):
            found.append((component, component_column(component, cell.name), col(query.value(cell))))
    return found


def _unit_totals(query: CellQuery, cells: Sequence[Cell]) -> exp.Select:
    values = dict.fromkeys(query.value(cell) for cell in cells)
    items: list[exp.Expr] = [col(k) for k in query.keys] + [col(UNIT)]
    if query.rows_are_units:
        items += [named(col(v), f"__t{v}") for v in values]
        return exp.select(*items).from_(table("__base"))
    items += [named(exp.Sum(this=col(v)), f"__t{v}") for v in values]
    return _group(exp.select(*items).from_(table("__base")), query, extra=(UNIT,))


def _magnitude(query: CellQuery, cells: Sequence[Cell]) -> exp.Select:
    items: list[exp.Expr] = [col(k) for k in query.keys] + ([col(GROUPING_COLUMN)] if query.grouped else [])
    for cell in cells:
        total = col(f"__t{query.value(cell)}")
        items.append(named(exp.Max(this=total.copy(), expressions=[lit(query.top_n)]), top_column(cell.name)))
        items.append(named(exp.Sum(this=total.copy()), total_column(cell.name)))
        negative = filtered(exp.Count(this=exp.Star()), exp.LT(this=total.copy(), expression=lit(0)))
        items.append(named(negative, negative_column(cell.name)))
    select = exp.select(*items).from_(table("__unit_totals"))
    keys = [col(k) for k in query.keys] + ([col(GROUPING_COLUMN)] if query.grouped else [])
    return select.group_by(*keys) if keys else select


def _order(query: CellQuery, cells: Sequence[Cell]) -> exp.Select:
    items: list[exp.Expr] = [col(k, "c") for k in query.keys] + ([col(GROUPING_COLUMN, "c")] if query.grouped else [])
    for cell in cells:
        value, released = col(query.value(cell), "b"), col(cell.name, "c")
        counted = exp.Count(this=exp.Star()) if query.rows_are_units else units(col(UNIT, "b"))
        below = filtered(counted.copy(), exp.LTE(this=value.copy(), expression=released.copy()))
        above = filtered(counted.copy(), exp.GTE(this=value.copy(), expression=released.copy()))
        items += [named(below, below_column(cell.name)), named(above, above_column(cell.name))]
    select = exp.select(*items).from_(table("__cells", "c")).join(table("__base", "b"), on=_rows_of_cell(query))
    keys = [col(k, "c") for k in query.keys] + ([col(GROUPING_COLUMN, "c")] if query.grouped else [])
    return select.group_by(*keys) if keys else select


def _rows_of_cell(query: CellQuery) -> exp.Expr:
    """Row ``b`` belongs to cell ``c`` when it matches every dimension the cell did not sum away."""
    conditions: list[exp.Expr] = []
    for i, key in enumerate(query.keys):
        same: exp.Expr = exp.NullSafeEQ(this=col(key, "b"), expression=col(key, "c"))
        if query.grouped:
            bit = 1 << (len(query.keys) - 1 - i)
            summed_away = exp.NEQ(
                this=exp.Paren(this=exp.BitwiseAnd(this=col(GROUPING_COLUMN, "c"), expression=lit(bit))), expression=lit(0)
            )
            same = exp.Paren(this=exp.or_(summed_away, same))
        conditions.append(same)
    return exp.and_(*conditions) if conditions else exp.true()


def _same_cell(query: CellQuery, left: str, right: str) -> exp.Expr:
    keys = [*query.keys, *([GROUPING_COLUMN] if query.grouped else [])]
    conditions = [exp.NullSafeEQ(this=col(k, left), expression=col(k, right)) for k in keys]
    return exp.and_(*conditions) if conditions else exp.true()
