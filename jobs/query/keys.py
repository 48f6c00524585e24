"""Group keys are outputs: which public values each key can take, and the rule for sensitive keys.

A key built from one column has *declared values* when the column has a declared domain (the key's
values are the domain's images), or when the key is a bin of a column with declared bounds
(``FLOOR(x / w)``, ``CEIL(x / w)``, either times a number: the bins of the declared range). The
worker evaluates each key over those values (``KeySource.sql``) and lays out every combination
(``jobs.keys``), so that a withheld row's key never shows a combination that occurs in the data.

A sensitive column is a grouping key only through declared values: its raw values would be output
as keys (``sensitive_key``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from core.schema import Bounds, ColumnSpec, DatasetSchema
from core.values import ColumnRole, ColumnType
from jobs.engine import Engine
from jobs.keys import KeyLayout, Ordering
from jobs.query.model import OutputColumn, OutputKind, QueryPlan, QueryRule, violation
from jobs.query.parse import DIALECT
from jobs.query.resolve import ColumnRef

MAX_BINS = 100  # a bin key of a sensitive column splits its declared range into at most this many bins
VALUE = "__v"  # the one column of the table of declared values a key is evaluated over
VALUES_TABLE = "__key_values"


@dataclass(frozen=True)
class KeySource:
    """One group key output over one dataset column, and the declared values of that column to evaluate it on."""

    name: str  # the output column
    dataset: str
    column: str
    expression: str  # the key with its column renamed ``__v`` (DuckDB SQL)
    values: tuple[Any, ...]  # the declared domain, or points of every bin of the declared range

    @property
    def sql(self) -> str:
        """The key's distinct values over the declared ones, from ``__key_values(__v)``."""
        key = exp.alias_(sqlglot.parse_one(self.expression, read=DIALECT), "k", quoted=True)
        source = exp.Table(this=exp.to_identifier(VALUES_TABLE, quoted=True))
        return exp.select(key).distinct().from_(source).sql(dialect=DIALECT)


@dataclass(frozen=True)
class KeyPlan:
    """The group key outputs in result order: each one's declared values (``None``: undeclared), and the ORDER BY.

    ``sources`` is ``None`` when some key output is not one column (a constant, or several keys
    combined): such a table is not laid out, and every fully withheld row is dropped.
    """

    keys: tuple[str, ...]
    sources: tuple[KeySource | None, ...] | None
    order: tuple[Ordering, ...]


def plan_keys(
    select: exp.Select, outputs: Sequence[OutputColumn], ref_of: Callable[[exp.Column], ColumnRef], schemas: Mapping[str, DatasetSchema]
) -> KeyPlan:
    """The keys' declared values and order; refuses a sensitive column grouped by its raw values."""
    shown = {projection.alias_or_name: projection.unalias() for projection in select.expressions}
    group = select.args.get("group")
    for key in group.expressions if group is not None else []:
        _check_sensitive(key, ref_of, schemas)
    keys = tuple(o.name for o in outputs if o.kind is OutputKind.GROUP_KEY)
    sources: list[KeySource | None] = []
    for name in keys:
        expression = shown[name]
        columns = list(expression.find_all(exp.Column))
        if len(columns) != 1 or not any(expression == key for key in (group.expressions if group is not None else [])):
            return KeyPlan(keys, None, _order(select, keys, shown))
        ref = ref_of(columns[0])
        spec = schemas[ref.dataset].column(ref.column)
        assert spec is not None, "the column was resolved against this schema"
        sources.append(_source(name, expression, ref, spec))
    return KeyPlan(keys, tuple(sources), _order(select, keys, shown))


def _check_sensitive(key: exp.Expr, ref_of: Callable[[exp.Column], ColumnRef], schemas: Mapping[str, DatasetSchema]) -> None:
    for column in key.find_all(exp.Column):
        ref = ref_of(column)
        spec = schemas[ref.dataset].column(ref.column)
        if spec is None or spec.role is not ColumnRole.SENSITIVE or spec.domain is not None:
            continue
        width = _bin_width(key, column)
        if spec.bounds is not None and width is not None and _bins(spec.bounds, width) <= MAX_BINS:
            continue
        message = (
            f"GROUP BY key {ref.qualified} is a sensitive column without a declared domain: group it by bins of its declared"
            f" range (FLOOR({ref.column} / width), at most {MAX_BINS} bins), never by its raw values"
        )
        raise violation(QueryRule.SENSITIVE_KEY, message, ref.qualified)


def _bins(bounds: Bounds, width: float) -> int:
    return math.floor(bounds.upper / width) - math.floor(bounds.lower / width) + 1


def _bin_width(key: exp.Expr, column: exp.Column) -> float | None:
    """``w`` when ``key`` is FLOOR/CEIL(column / w), optionally times a number; else ``None``."""
    node = _bare(key)
    if isinstance(node, exp.Mul):
        sides = [_bare(node.this), _bare(node.expression)]
        rounding = [s for s in sides if isinstance(s, exp.Floor | exp.Ceil)]
        numbers = [s for s in sides if _number(s) is not None]
        if len(rounding) != 1 or len(numbers) != 1:
            return None
        node = rounding[0]
    if not isinstance(node, exp.Floor | exp.Ceil) or node.args.get("decimals") is not None:
        return None
    division = _bare(node.this)
    if not isinstance(division, exp.Div) or _bare(division.this) is not column:
        return None
    width = _number(_bare(division.expression))
    return width if width is not None and width > 0 else None


def _bare(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _number(node: exp.Expr) -> float | None:
    if isinstance(node, exp.Literal) and node.is_number:
        value = float(node.to_py())
        return value if math.isfinite(value) else None
    return None


def _source(name: str, expression: exp.Expr, ref: ColumnRef, spec: ColumnSpec) -> KeySource | None:
    values: tuple[Any, ...] | None = None
    if spec.domain is not None:
        values = tuple(spec.domain)
    elif spec.bounds is not None:
        columns = list(expression.find_all(exp.Column))
        width = _bin_width(expression, columns[0])
        if width is not None and _bins(spec.bounds, width) <= MAX_BINS:
            values = _bin_points(spec.bounds, width, spec.type)
    if values is None:
        return None
    return KeySource(name, ref.dataset, ref.column, _over_values(expression), values)


def _over_values(expression: exp.Expr) -> str:
    over = expression.copy()
    if isinstance(over, exp.Column):
        over = exp.column(VALUE, quoted=True)
    for column in list(over.find_all(exp.Column)):
        column.replace(exp.column(VALUE, quoted=True))
    return over.sql(dialect=DIALECT)


def as_run(plan: KeyPlan, select: exp.Select) -> KeyPlan:
    """The keys' expressions as the safety stage rewrote them (``make_safe`` works in place): the forms that run."""
    if plan.sources is None:
        return plan
    shown = {projection.alias_or_name: projection.unalias() for projection in select.expressions}
    sources = tuple(None if s is None else replace(s, expression=_over_values(shown[s.name])) for s in plan.sources)
    return KeyPlan(plan.keys, sources, plan.order)


def _bin_points(bounds: Bounds, width: float, kind: ColumnType) -> tuple[Any, ...]:
    """The range's ends and the middle of every bin inside it: the key takes each bin's value on one of them."""
    first, last = math.floor(bounds.lower / width), math.floor(bounds.upper / width)
    points = [bounds.lower, bounds.upper] + [(j + 0.5) * width for j in range(first, last + 1)]
    inside = [p for p in points if bounds.lower <= p <= bounds.upper]
    if kind is ColumnType.INT:
        return tuple(sorted({min(max(round(p), math.ceil(bounds.lower)), math.floor(bounds.upper)) for p in inside}))
    return tuple(sorted(set(inside)))


def _order(select: exp.Select, keys: Sequence[str], shown: Mapping[str, exp.Expr]) -> tuple[Ordering, ...]:
    """The ORDER BY as key output names (``check_order`` allows output keys only, by name or as grouped)."""
    order = select.args.get("order")
    found: list[Ordering] = []
    for ordered in order.expressions if order is not None else []:
        target = ordered.this
        name = target.name if isinstance(target, exp.Column) and not target.table and target.name in keys else None
        if name is None:
            name = next((k for k in keys if shown[k] == target), None)
        if name is not None and all(o.column != name for o in found):
            found.append(Ordering(name, bool(ordered.args.get("desc")), bool(ordered.args.get("nulls_first"))))
    return tuple(found)


BARE = exp.column(VALUE, quoted=True).sql(dialect=DIALECT)  # a key that is its column itself


def layout(plan: QueryPlan, engine: Engine, tables: Mapping[str, pa.Table]) -> KeyLayout:
    """The plan's key layout: each key evaluated over its column's declared values (typed as the loaded column).

    A key that is its column itself takes the distinct declared values as they are: evaluating it in
    the engine would give the same values and cost a fresh database (tens of ms) per key.
    """
    keys = plan.keys
    if keys is None:
        names = plan.group_keys
        return KeyLayout(names, (None,) * len(names))
    if keys.sources is None:
        return KeyLayout(keys.keys, (None,) * len(keys.keys), keys.order)
    domains: list[tuple[Any, ...] | None] = []
    for source in keys.sources:
        if source is None:
            domains.append(None)
            continue
        kind = tables[source.dataset].schema.field(source.column).type
        values = pa.table({VALUE: pa.array(list(source.values)).cast(kind)})
        if source.expression == BARE:
            found = pc.unique(values.column(VALUE)).to_pylist()
        else:
            found = engine.run(source.sql, {VALUES_TABLE: values}).column("k").to_pylist()
        domains.append(tuple(v for v in found if v is not None))
    return KeyLayout(keys.keys, tuple(domains), keys.order)
