"""Stage five: the executable form of a validated query, carrying the evidence output control needs.

For each table reference ``i`` of the outer FROM/JOIN (in that order) one column is appended:
``COUNT(DISTINCT <alias>.<privacy unit>) AS "__units_<i>"``, the number of distinct privacy units
behind each output row. Through a derived table the privacy-unit column is first added to the
derived table's projection as ``"__pu_<i>"``. Rows, their order and the other columns are unchanged.

``add_evidence`` then appends the columns of the evidence contract (``policies.evidence``) for each
aggregate with an argument. What needs the rows per privacy unit, or the released cell value, is
computed beside the analyst's query and joined to it on the group keys (see ``add_evidence``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from core.schema import DatasetSchema
from jobs.query.functions import is_aggregate
from jobs.query.model import OutputColumn, OutputKind
from jobs.query.outputs import group_keys, is_output_ref
from policies.evidence import (
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

UNITS_PREFIX = "__units_"
PASSED_UNIT_PREFIX = "__pu_"

# Names of the evidence query's own relations and hidden columns; analysts cannot use "__" names.
CELLS = "__cells"  # the analyst's query with its unit counts: one row per released row
BY_UNIT = "__by_unit"  # per cell, from the per-unit aggregates: magnitude and rank evidence
RANKS = "__ranks"  # where rows are units: per cell, rows at or below / at or above the released value
PER_UNIT = "__per_unit"  # per cell and privacy unit: SUM, MIN, MAX of the arguments
KEY_PREFIX = "__key_"  # the j-th GROUP BY expression
SORT_PREFIX = "__sort_"  # the j-th ORDER BY expression, when it is not an output name
VALUE_PREFIX = "__value_"  # the bare order statistic of an output that is an expression over it
UNIT = "__unit"
PER_UNIT_PREFIX = "__per_unit_"


def add_unit_columns(
    select: exp.Select, schemas: Mapping[str, DatasetSchema], unique_units: frozenset[str] = frozenset()
) -> tuple[exp.Select, tuple[str, ...]]:
    """A copy of the qualified ``select`` with the ``__units_<i>`` columns appended, and their names.

    ``unique_units`` names datasets in which every row is a different privacy unit (and none is
    missing). Over one such table and no join, the distinct units behind a cell are its rows, so
    ``COUNT(*)`` gives the same number without the cost of a distinct count (several times the
    query's own cost on large tables). With a join, rows repeat and the distinct count is kept.
    """
    query = select.copy()
    items = _items(query)
    names: list[str] = []
    for position, item in enumerate(items):
        name = f"{UNITS_PREFIX}{position}"
        if _rows_are_units(query, unique_units):
            query.append("expressions", exp.alias_(exp.Count(this=exp.Star()), name, quoted=True))
            names.append(name)
            continue
        units = exp.Count(this=exp.Distinct(expressions=[_unit_column(item, position, schemas)]))
        query.append("expressions", exp.alias_(units, name, quoted=True))
        names.append(name)
    return query, tuple(names)


def _items(query: exp.Select) -> list[exp.Expr]:
    """The table references of the outer FROM/JOIN, in order."""
    return [query.args["from_"].this, *(join.this for join in query.args.get("joins") or [])]


def _rows_are_units(query: exp.Select, unique_units: frozenset[str]) -> bool:
    """One table reference over a dataset whose every row is a different privacy unit."""
    items = _items(query)
    return len(items) == 1 and _base_table(items[0]) in unique_units


def _base_table(item: exp.Expr) -> str:
    """The dataset behind a table reference: the table itself, or the one table of a derived table."""
    if isinstance(item, exp.Table):
        return item.name
    assert isinstance(item, exp.Subquery)
    assert isinstance(item.this, exp.Select)
    return str(item.this.args["from_"].this.name)


def _unit_column(item: exp.Expr, position: int, schemas: Mapping[str, DatasetSchema]) -> exp.Column:
    """The privacy-unit column as the outer query sees it through table reference ``item``."""
    if isinstance(item, exp.Table):
        return exp.column(schemas[item.name].privacy_unit, table=item.alias_or_name, quoted=True)
    assert isinstance(item, exp.Subquery)
    assert isinstance(item.this, exp.Select)
    inner = item.this
    table = inner.args["from_"].this
    passed = f"{PASSED_UNIT_PREFIX}{position}"
    unit = exp.column(schemas[table.name].privacy_unit, table=table.alias_or_name, quoted=True)
    inner.append("expressions", exp.alias_(unit, passed, quoted=True))
    return exp.column(passed, table=item.alias, quoted=True)


@dataclass(frozen=True)
class _Measured:
    """An aggregate output whose aggregate has an argument (everything but ``COUNT(*)``)."""

    index: int  # position among the outputs
    name: str
    aggregate: Aggregate
    call: exp.Expr  # the aggregate call
    argument: exp.Expr  # its argument, as the analyst's FROM/JOIN sees it
    bare: bool  # the output is the call itself, not an expression over it


@dataclass(frozen=True)
class _Context:
    query: exp.Select  # the analyst's query with its unit counts: outputs, then __units_<i>
    keys: list[exp.Expr]  # its GROUP BY expressions
    unit: exp.Column  # the first table reference's privacy unit, as the outer FROM/JOIN sees it (unused if per_row)
    per_row: bool  # one table whose every row is its own unit: rows stand for units
    top_n: int


def add_evidence(
    query: exp.Select,
    outputs: Sequence[OutputColumn],
    schemas: Mapping[str, DatasetSchema],
    unique_units: frozenset[str],
    top_n: int,
    rounding: bool = False,
) -> tuple[exp.Select, tuple[str, ...]]:
    """``query`` (from ``add_unit_columns``) extended by the evidence columns of ``policies.evidence``, and their names.

    With ``rounding`` (the policy rounds its results), each AVG, STDDEV and VARIANCE output also
    gets its components (``__count_<c>``, ``__sum_<c>``, ``__sumsq_<c>``), plain aggregates of the
    query itself, from which output control derives the released value; over ``DISTINCT`` none is
    added, and output control withholds the output.

    Per aggregate output ``c`` with an argument: ``__missing_<c>``; for SUM and AVG also ``__top_<c>``
    (at most ``top_n`` per-unit totals), ``__total_<c>``, ``__neg_<c>``; for MIN, MAX, MEDIAN and
    quantiles ``__below_<c>`` and ``__above_<c>``. They follow the ``__units_<i>`` columns, grouped
    by output in output order. ``COUNT(*)`` has no evidence, so a query of counts is left as it is.

    Missing counts are plain aggregates and are appended to the query itself. Per-unit totals need
    a second aggregation, and rank counts the released value, so when either is asked for the result
    has this shape (CTE names and hidden ``__key_<j>`` columns are the sandbox's own)::

        WITH __cells AS (<the query> + its GROUP BY expressions AS __key_<j>),
        __by_unit AS (
          SELECT __key_<j>, MAX(CAST(t AS DOUBLE), top_n), CAST(SUM(t) AS DOUBLE), COUNT(*) FILTER (WHERE t < 0),
                 COUNT(__unit) FILTER (WHERE lo <= __cells.<value>), COUNT(__unit) FILTER (WHERE hi >= __cells.<value>)
          FROM (SELECT <keys> AS __key_<j>, <unit> AS __unit, SUM(<arg>) AS t, MIN(<arg>) AS lo, MAX(<arg>) AS hi
                FROM <the query's FROM/JOIN/WHERE> GROUP BY <keys>, <unit>) AS __per_unit
          JOIN __cells ON __per_unit.__key_<j> IS NOT DISTINCT FROM __cells.__key_<j>  -- only with ranks
          GROUP BY __per_unit.__key_<j>)
        SELECT <outputs>, <units>, <evidence> FROM __cells
        LEFT JOIN __by_unit ON __cells.__key_<j> IS NOT DISTINCT FROM __by_unit.__key_<j> ORDER BY <the query's>

    All evidence shares that one two-level aggregation (a unit is at or below a value when its
    smallest value is). Without GROUP BY the joins are ``ON TRUE`` (one cell). The privacy unit of
    totals and ranks is the first table reference's: with a join, a "unit" is a unit of the FROM
    table (the threshold still takes the minimum over ``__units_<i>``). Rows without a unit form
    one pseudo-unit of the totals (the larger top share errs on the side of suppression) and count
    as no unit in ranks. Over one table whose rows are all distinct units (``unique_units``) rows
    stand for units: magnitude evidence becomes plain aggregates of the query itself, and ranks
    (``__ranks``) count the rows joined back to their cell. ORDER BY stays in ``__cells`` only when
    LIMIT/OFFSET need it; the outer query sorts again, by output names or hidden ``__sort_<j>``.
    """
    measured = _measured(query, outputs)
    if not measured:  # counts only: nothing to add
        return query, ()
    ctx = _Context(query, group_keys(query), _first_unit(query, schemas), _rows_are_units(query, unique_units), top_n)
    cells = query.copy()
    names: list[str] = []
    sources: dict[str, str] = {}  # evidence column -> the relation that computes it
    for m in measured:
        if m.aggregate in MAGNITUDE:
            magnitude = _magnitude_columns(m.argument, m.name, top_n)
            names += [column.alias for column in magnitude]
            sources.update(dict.fromkeys(names[-3:], CELLS if ctx.per_row else BY_UNIT))
            if ctx.per_row:
                cells.set("expressions", [*cells.expressions, *magnitude])
        names.append(missing_column(m.name))
        sources[names[-1]] = CELLS
        cells.append("expressions", _as(_count_where(exp.Is(this=m.argument.copy(), expression=exp.Null())), names[-1]))
        if rounding and m.aggregate in ROUNDING_COMPONENTS and not isinstance(m.call.this, exp.Distinct):
            for component in ROUNDING_COMPONENTS[m.aggregate]:
                names.append(component_column(component, m.name))
                sources[names[-1]] = CELLS
                cells.append("expressions", _as(_component(component, m.argument), names[-1]))
        if m.aggregate in ORDER_STATISTICS:
            names += [below_column(m.name), above_column(m.name)]
            sources.update(dict.fromkeys(names[-2:], RANKS if ctx.per_row else BY_UNIT))
    if set(sources.values()) <= {CELLS}:  # no per-unit totals, no ranks: the query itself carries all
        return cells, tuple(names)
    return _joined(cells, ctx, measured, names, sources, len(outputs)), tuple(names)


def _measured(query: exp.Select, outputs: Sequence[OutputColumn]) -> list[_Measured]:
    found: list[_Measured] = []
    for index, (projection, output) in enumerate(zip(query.expressions[: len(outputs)], outputs, strict=True)):
        if output.kind is not OutputKind.AGGREGATE or output.aggregate is None:
            continue
        expression = projection.unalias()
        call = next(node for node in expression.walk() if is_aggregate(node))
        argument = call.this
        if isinstance(argument, exp.Distinct):  # COUNT(DISTINCT x)
            argument = argument.expressions[0]
        if isinstance(argument, exp.Expr) and not isinstance(argument, exp.Star):
            found.append(_Measured(index, output.name, output.aggregate, call, argument, call is expression))
    return found


def _first_unit(query: exp.Select, schemas: Mapping[str, DatasetSchema]) -> exp.Column:
    """The first table reference's privacy unit (through a derived table: as passed by ``add_unit_columns``)."""
    item = _items(query)[0]
    if isinstance(item, exp.Table):
        return exp.column(schemas[item.name].privacy_unit, table=item.alias_or_name, quoted=True)
    assert isinstance(item, exp.Subquery)
    return exp.column(f"{PASSED_UNIT_PREFIX}0", table=item.alias, quoted=True)


def _magnitude_columns(value: exp.Expr, name: str, top_n: int) -> list[exp.Alias]:
    """Top, total and negative count of ``value``, one per unit (a per-unit total, or a row that is a unit)."""
    top = exp.Max(this=exp.cast(value.copy(), exp.DataType.Type.DOUBLE), count=exp.Literal.number(top_n))
    total = exp.cast(exp.Sum(this=value.copy()), exp.DataType.Type.DOUBLE)
    negative = _count_where(exp.LT(this=value.copy(), expression=exp.Literal.number(0)))
    return [_as(e, n) for e, n in ((top, top_column(name)), (total, total_column(name)), (negative, negative_column(name)))]


def _component(component: str, argument: exp.Expr) -> exp.Expr:
    """``COUNT(x)``, the sum of ``x`` or the sum of its squares, as DOUBLE (the components of a rounded mean or spread)."""
    if component == "count":
        return exp.Count(this=argument.copy())
    if component == "sum":
        return exp.cast(exp.Sum(this=argument.copy()), exp.DataType.Type.DOUBLE)
    value = exp.cast(argument.copy(), exp.DataType.Type.DOUBLE)
    return exp.Sum(this=exp.Mul(this=value, expression=value.copy()))


def _count_where(condition: exp.Expr, counted: exp.Expr | None = None) -> exp.Filter:
    """``COUNT(*)``, or ``COUNT(counted)``, of the rows where ``condition`` holds."""
    count = exp.Count(this=exp.Star() if counted is None else counted.copy())
    return exp.Filter(this=count, expression=exp.Where(this=condition))


def _joined(
    cells: exp.Select, ctx: _Context, measured: list[_Measured], names: list[str], sources: dict[str, str], n_outputs: int
) -> exp.Select:
    """The shape of ``add_evidence``: the cells and the one evidence relation they need, joined on the group keys."""
    ranked = [m for m in measured if m.aggregate in ORDER_STATISTICS]
    order = _prepare_cells(cells, ctx, ranked, n_outputs)
    ctes = [_cte(cells, CELLS, materialized=bool(ranked))]  # read twice when ranks compare with the cell values
    relation = RANKS if ctx.per_row else BY_UNIT
    evidence = _ranks(ctx, ranked) if ctx.per_row else _by_unit(ctx, [m for m in measured if m.aggregate in MAGNITUDE], ranked)
    ctes.append(_cte(evidence, relation))
    shown = [projection.alias_or_name for projection in ctx.query.expressions] + names
    final = exp.Select(expressions=[_as(_ref(name, sources.get(name, CELLS)), name) for name in shown])
    final.set("from_", exp.From(this=_table(CELLS)))
    final.set("joins", [_left_join(relation, len(ctx.keys))])
    final.set("with_", exp.With(expressions=ctes))
    final.set("order", order)
    return final


def _prepare_cells(cells: exp.Select, ctx: _Context, ranked: list[_Measured], n_outputs: int) -> exp.Order | None:
    """Add the hidden columns the evidence joins on or compares with; return the outer ORDER BY."""
    for j, key in enumerate(ctx.keys):
        cells.append("expressions", _as(key.copy(), f"{KEY_PREFIX}{j}"))
    for m in ranked:
        if not m.bare:  # e.g. MAX(x) / 1000: ranks compare x with MAX(x)
            cells.append("expressions", _as(m.call.copy(), f"{VALUE_PREFIX}{m.index}"))
    order = cells.args.get("order")
    if order is None:
        return None
    names = {projection.alias_or_name for projection in cells.expressions[:n_outputs]}
    outer: list[exp.Ordered] = []
    for j, ordered in enumerate(order.expressions):
        target = ordered.this
        if is_output_ref(target, names):
            column = _ref(target.name, CELLS)
        else:  # a group key or an aggregate that is not an output: sorted by a hidden copy
            cells.append("expressions", _as(target.copy(), f"{SORT_PREFIX}{j}"))
            column = _ref(f"{SORT_PREFIX}{j}", CELLS)
        outer.append(exp.Ordered(this=column, desc=ordered.args.get("desc"), nulls_first=ordered.args.get("nulls_first")))
    if cells.args.get("limit") is None and cells.args.get("offset") is None:
        cells.set("order", None)  # sorting the CTE would be wasted: the outer query sorts
    return exp.Order(expressions=outer)


def _by_unit(ctx: _Context, magnitude: list[_Measured], ranked: list[_Measured]) -> exp.Select:
    """One pass for all evidence: per cell and unit (inner GROUP BY keys, unit) the total of each magnitude
    argument and the extremes of each ranked one; then per cell (outer GROUP BY keys). A unit has a value
    at or below the released one when its smallest value is, at or above when its largest is."""
    inner = _rows(ctx.query)
    inner.set("expressions", [*(_as(key.copy(), f"{KEY_PREFIX}{j}") for j, key in enumerate(ctx.keys)), _as(ctx.unit.copy(), UNIT)])
    per_unit: dict[tuple[type[exp.Expr], exp.Expr], exp.Column] = {}  # each once: SUM(x) serves SUM(x) and AVG(x)

    def of(function: type[exp.Expr], argument: exp.Expr) -> exp.Column:
        if (function, argument) not in per_unit:
            name = f"{PER_UNIT_PREFIX}{len(per_unit)}"
            inner.append("expressions", _as(function(this=argument.copy()), name))
            per_unit[function, argument] = _ref(name, PER_UNIT)
        return per_unit[function, argument].copy()

    columns = [_as(_ref(f"{KEY_PREFIX}{j}", PER_UNIT), f"{KEY_PREFIX}{j}") for j in range(len(ctx.keys))]
    for m in magnitude:
        columns += _magnitude_columns(of(exp.Sum, m.argument), m.name, ctx.top_n)
    unit = _ref(UNIT, PER_UNIT)  # COUNT(unit): rows without a unit are no unit at or beyond a value
    for m in ranked:
        value = _ref(m.name if m.bare else f"{VALUE_PREFIX}{m.index}", CELLS)
        below = _count_where(exp.LTE(this=of(exp.Min, m.argument), expression=value.copy()), unit)
        above = _count_where(exp.GTE(this=of(exp.Max, m.argument), expression=value), unit)
        columns += [_as(below, below_column(m.name)), _as(above, above_column(m.name))]
    inner.set("group", exp.Group(expressions=[*(key.copy() for key in ctx.keys), ctx.unit.copy()]))
    outer = exp.Select(expressions=columns)
    outer.set("from_", exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(PER_UNIT, quoted=True)))))
    if ranked:  # the released values: the cells' row of the same keys
        outer.set("joins", [_key_join(CELLS, PER_UNIT, len(ctx.keys), side=None)])
    if ctx.keys:
        outer.set("group", exp.Group(expressions=[_ref(f"{KEY_PREFIX}{j}", PER_UNIT) for j in range(len(ctx.keys))]))
    return outer


def _ranks(ctx: _Context, ranked: list[_Measured]) -> exp.Select:
    """Where rows are units: per cell, the rows at or below, and at or above, the released order statistic."""
    rows = _rows(ctx.query)
    keys = [_ref(f"{KEY_PREFIX}{j}", CELLS) for j in range(len(ctx.keys))]
    matches = [exp.NullSafeEQ(this=key.copy(), expression=cell_key.copy()) for key, cell_key in zip(ctx.keys, keys, strict=True)]
    rows.append("joins", exp.Join(this=_table(CELLS), on=exp.and_(*matches) if matches else exp.true()))
    columns = [_as(key, key.name) for key in keys]
    for m in ranked:
        value = _ref(m.name if m.bare else f"{VALUE_PREFIX}{m.index}", CELLS)
        below = _count_where(exp.LTE(this=m.argument.copy(), expression=value.copy()))
        above = _count_where(exp.GTE(this=m.argument.copy(), expression=value))
        columns += [_as(below, below_column(m.name)), _as(above, above_column(m.name))]
    rows.set("expressions", columns)
    if keys:
        rows.set("group", exp.Group(expressions=[key.copy() for key in keys]))
    return rows


def _rows(query: exp.Select) -> exp.Select:
    """A SELECT without columns over the rows behind the cells: the query's FROM, JOINs and WHERE."""
    rows = exp.Select()
    rows.set("from_", query.args["from_"].copy())
    rows.set("joins", [join.copy() for join in query.args.get("joins") or []])
    where = query.args.get("where")
    if where is not None:
        rows.set("where", where.copy())
    return rows


def _left_join(relation: str, n_keys: int) -> exp.Join:
    return _key_join(relation, CELLS, n_keys, side="LEFT")


def _key_join(relation: str, other: str, n_keys: int, side: str | None) -> exp.Join:
    """``[side] JOIN relation ON`` its hidden keys equal ``other``'s, NULL matching NULL (a NULL group is a group)."""
    matches = [exp.NullSafeEQ(this=_ref(f"{KEY_PREFIX}{j}", other), expression=_ref(f"{KEY_PREFIX}{j}", relation)) for j in range(n_keys)]
    return exp.Join(this=_table(relation), side=side, on=exp.and_(*matches) if matches else exp.true())


def _cte(select: exp.Select, name: str, materialized: bool = False) -> exp.CTE:
    return exp.CTE(this=select, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True)), materialized=materialized or None)


def _table(name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def _as(expression: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=expression, alias=exp.to_identifier(name, quoted=True))


def _ref(name: str, relation: str) -> exp.Column:
    return exp.column(name, table=relation, quoted=True)
