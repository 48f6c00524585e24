"""The plan of a differentially private table: its keys, its aggregates and the SQL of its exact cells.

``build`` makes the SQL: keep at most ``max_rows`` rows per privacy unit (a random choice), clamp each
measure to its declared bounds, then per cell count the rows and the distinct units, sum the clamped
values and count the non-NULL ones, and for a quantile list the cell's clamped values. Only cells
present in the data come back; ``jobs.dp.answer`` lays out the released cells and adds the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from core.errors import InternalError, PolicyViolation
from core.schema import Scalar
from policies.model import Aggregate

RULE = "dp_unsupported"  # the rule every shape without a DP form names
MAX_CELLS = 100_000  # every combination of the keys' declared domains is released: bound the table's size
DIALECT = "duckdb"
COUNT = "__dp_count"  # rows of the cell, after capping
UNITS = "__dp_units"  # distinct privacy units of the cell, after capping
ROW_NUMBER = "__dp_row"


def unsupported(reason: str, column: str | None = None) -> PolicyViolation:
    """The refusal of a shape the DP slice does not answer; the message ends by naming the rule."""
    return PolicyViolation(f"{reason} (rule {RULE})", details={"rule": RULE, "column": column})


@dataclass(frozen=True)
class DPKey:
    """A grouping key of the released table.

    ``expression`` computes each row's key over the source table (a column, or a histogram's bin
    number). With a declared public ``domain`` every value of it is a released cell, present in the
    data or not; without one (None) the released values are chosen by DP key selection.
    """

    name: str  # the output column
    expression: exp.Expr
    domain: tuple[Scalar, ...] | None


@dataclass(frozen=True)
class DPAggregate:
    """One released aggregate column.

    COUNT with no ``measure`` counts rows, with one its non-NULL values; COUNT_DISTINCT counts the
    privacy units of the cell; SUM, AVG, MEDIAN and QUANTILE read the measure clamped to
    ``[lower, upper]``. Every aggregate of one measure carries that measure's declared bounds.
    """

    name: str
    aggregate: Aggregate
    measure: str | None
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
    keys: tuple[DPKey, ...]
    aggregates: tuple[DPAggregate, ...]
    sql: str  # the exact per-cell aggregates, for the cells present in the data

    @property
    def selects_keys(self) -> bool:
        """Some key has no declared domain: its released values are chosen by DP key selection (which needs δ)."""
        return any(key.domain is None for key in self.keys)

    @property
    def selected(self) -> tuple[str, ...]:
        return tuple(key.name for key in self.keys if key.domain is None)


@dataclass(frozen=True)
class Source:
    """The rows a DP table aggregates: one table (``alias`` qualifies its columns), an optional filter, the unit column."""

    table: exp.Table
    alias: str
    unit: str
    where: exp.Expr | None = None

    def column(self, name: str) -> exp.Expr:
        return exp.column(name, table=self.alias, quoted=True)


def build(dataset: str, source: Source, keys: Sequence[DPKey], aggregates: Sequence[DPAggregate], max_rows: int | None) -> DPPlan:
    """The plan and its SQL; ``max_rows`` None means every row is a different unit already (no capping pass).

    Refuses keys whose declared domains combine into more than ``MAX_CELLS`` cells.
    """
    if math.prod(len(key.domain) for key in keys if key.domain is not None) > MAX_CELLS:
        raise unsupported(f"the group keys' domains combine into more than {MAX_CELLS} cells")
    if not aggregates:
        raise unsupported("a differentially private table has at least one aggregate")
    bounds: dict[str, tuple[float, float]] = {}
    for agg in aggregates:
        if agg.measure is not None and bounds.setdefault(agg.measure, (agg.lower, agg.upper)) != (agg.lower, agg.upper):
            raise InternalError(f"two bounds for measure {agg.measure}")
    return DPPlan(dataset, tuple(keys), tuple(aggregates), _cells_sql(source, keys, aggregates, max_rows))


def _cells_sql(source: Source, keys: Sequence[DPKey], aggregates: Sequence[DPAggregate], max_rows: int | None) -> str:
    """Cap each unit to ``max_rows`` rows, clamp measures, aggregate per cell.

    A measure is summed and counted (non-NULL values) when a COUNT, SUM or AVG reads it, and listed
    per cell (``LIST`` of its clamped values, NULLs included: the answer drops them) when a quantile
    does. The listed values are clamped as DOUBLE, so the answer reads each list as one float64
    buffer; they are the values the DECIMAL clamp converts to, as bounds are exact doubles and
    DuckDB's cast is correctly rounded (for a DECIMAL: while its unscaled value is below 2**53).
    NULL stays NULL through a clamp (DuckDB's LEAST/GREATEST skip NULLs, so the CASE keeps it out).

    The tree is built once from copies of the source's expressions and generated without copying it
    again (sqlglot's builder methods copy the whole tree at each call by default).
    """
    distinct = any(a.aggregate is Aggregate.COUNT_DISTINCT for a in aggregates)
    inner = [key.expression.as_(f"__dp_key_{i}") for i, key in enumerate(keys)]  # as_ copies
    outer: list[exp.Expr] = [exp.column(f"__dp_key_{i}").as_(f"__dp_key_{i}") for i in range(len(keys))]
    outer.append(exp.Count(this=exp.Star()).as_(COUNT))
    if distinct:
        outer.append(exp.Count(this=exp.Distinct(expressions=[exp.column("__dp_unit")])).as_(UNITS))
    for measure, (agg, summed, listed) in _measures(aggregates).items():
        if summed:
            inner.append(_clamped(source.column(measure), agg).as_(f"__dp_m_{measure}"))
            outer.append(exp.Sum(this=exp.column(f"__dp_m_{measure}")).as_(agg.sum_column))
            outer.append(exp.Count(this=exp.column(f"__dp_m_{measure}")).as_(agg.count_column))
        if listed:
            value = exp.cast(source.column(measure), exp.DataType.Type.DOUBLE)
            inner.append(_clamped(value, agg).as_(f"__dp_v_{measure}"))
            outer.append(exp.func("LIST", exp.column(f"__dp_v_{measure}")).as_(agg.values_column))
    if max_rows is not None or distinct:
        inner.append(source.column(source.unit).as_("__dp_unit"))
    if max_rows is not None:
        inner.append(exp.func("RANDOM").as_("__dp_rand"))  # DuckDB refuses a volatile window ORDER BY: draw it first
    if not inner:  # no key, no measure and no capping: COUNT(*) only needs the rows to exist
        inner.append(exp.Literal.number(1).as_("__dp_row_exists"))
    rows = exp.Select(expressions=inner, from_=exp.From(this=source.table.copy()))
    if source.where is not None:
        rows.set("where", exp.Where(this=source.where.copy()))
    query = exp.Select(expressions=outer, from_=exp.From(this=_capped(rows, max_rows)))
    if max_rows is not None:
        query.set("where", exp.Where(this=exp.LTE(this=exp.column(ROW_NUMBER), expression=exp.Literal.number(max_rows))))
    if keys:
        query.set("group", exp.Group(expressions=[exp.column(f"__dp_key_{i}") for i in range(len(keys))]))
    return query.sql(dialect=DIALECT, copy=False)


def _measures(aggregates: Sequence[DPAggregate]) -> dict[str, tuple[DPAggregate, bool, bool]]:
    """Each measure once (with its bounds): whether a COUNT, SUM or AVG sums it, whether a quantile lists it."""
    found: dict[str, tuple[DPAggregate, bool, bool]] = {}
    for agg in aggregates:
        if agg.measure is not None:
            first, summed, listed = found.get(agg.measure, (agg, False, False))
            found[agg.measure] = (first, summed or agg.alpha is None, listed or agg.alpha is not None)
    return found


def _clamped(value: exp.Expr, agg: DPAggregate) -> exp.Expr:
    """``value`` clamped to the measure's bounds, NULL kept NULL (``value`` is used twice: pass a fresh tree)."""
    clamped = exp.func("GREATEST", exp.func("LEAST", value, exp.Literal.number(agg.upper)), exp.Literal.number(agg.lower))
    return exp.Case(ifs=[exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null())], default=clamped)


def _capped(rows: exp.Select, max_rows: int | None) -> exp.Subquery:
    """The rows, or with ``max_rows`` each unit's first ``max_rows`` rows in a random order, numbered by ``ROW_NUMBER``."""
    if max_rows is None:
        return exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier("__dp_capped")))
    window = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("__dp_unit")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("__dp_rand"))]),
    )
    numbered = exp.Select(
        expressions=[exp.Star(), window.as_(ROW_NUMBER)],
        from_=exp.From(this=exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier("__dp_rows")))),
    )
    return exp.Subquery(this=numbered, alias=exp.TableAlias(this=exp.to_identifier("__dp_capped")))
