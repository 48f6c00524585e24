"""Failure carries no secret: after validation, nothing a query computes can raise on a data value.

Whether a job fails is released like its numbers. In DuckDB a CAST raises on a value it cannot
convert, integer arithmetic raises on overflow, and comparing a text column with a number casts
every row's text. With those, ``CAST(CASE WHEN race = 5 AND income > t THEN 'x' ELSE '1' END AS INT)``
fails exactly when a condition on one person holds, and a binary search needs 19 jobs. So:

- every CAST (and ``::``) runs as TRY_CAST: an unconvertible value becomes NULL instead of an error;
- integer arithmetic (``+``, ``-``, ``*``, unary minus, ABS) runs on DOUBLE operands, which reach
  infinity instead of raising (``/`` already divides as DOUBLE; ``%`` and ``//`` are not allowed);
  arithmetic is on numbers only (date arithmetic can leave the range of dates and raise);
- a comparison, IN list, BETWEEN, CASE value, COALESCE, NULLIF, LEAST or GREATEST whose operands are
  of different kinds (text, number, date, boolean) is refused (rule ``type_mismatch``): DuckDB
  would cast row values to make them agree. Write date literals as ``DATE '2020-01-01'``.

Aggregates over the columns' own types cannot raise (sums of integers widen to HUGEINT; STDDEV of
infinity is NaN). ``tests/jobs/test_query_safety.py`` runs every allowed function over extreme
values (NaN, infinities, the largest integers, empty text, NULL) to keep that true.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum

from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

from core.schema import DatasetSchema
from jobs.query.model import QueryRule, violation
from jobs.query.parse import DIALECT
from jobs.query.resolve import SQL_TYPES

DataType = exp.DataType.Type


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"


_INEXACT = frozenset({DataType.FLOAT, DataType.DOUBLE})
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Abs)
_COMPARED = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In, exp.Nullif, exp.Coalesce, exp.Least, exp.Greatest)


def make_safe(select: exp.Select, schemas: Mapping[str, DatasetSchema]) -> None:
    """Refuse comparisons across kinds, then rewrite ``select`` in place so that no value can make it raise."""
    schema: dict[str, object] = {name: {column: SQL_TYPES[spec.type] for column, spec in s.columns.items()} for name, s in schemas.items()}
    annotate_types(select, schema=schema, dialect=DIALECT)
    for node in list(select.walk()):
        if isinstance(node, _COMPARED) or (isinstance(node, exp.Case) and node.args.get("this") is not None):
            _check_kinds(node)
        elif isinstance(node, (*_ARITHMETIC, exp.Div)) and {_kind(operand) for operand in node.iter_expressions()} - {Kind.NUMBER, None}:
            raise violation(QueryRule.TYPE_MISMATCH, f"{node.key.upper()} computes on numbers only, not on text, dates or booleans")
    for node in list(select.walk()):
        if type(node) is exp.Cast:
            node.replace(exp.TryCast(this=node.this, to=node.to))
    for node in list(select.walk()):
        if isinstance(node, _ARITHMETIC) and not (node.type is not None and node.type.this in _INEXACT):
            for child in list(node.iter_expressions()):
                if not isinstance(child, exp.Literal):
                    child.replace(exp.TryCast(this=child.copy(), to=exp.DataType.build("DOUBLE")))


def _check_kinds(node: exp.Expr) -> None:
    kinds = {kind for kind in map(_kind, _operands(node)) if kind is not None}
    if len(kinds) > 1:
        shown = " and ".join(sorted(kinds))
        column = next(node.find_all(exp.Column), None)
        where = f" (column {column.name})" if column is not None else ""
        raise violation(QueryRule.TYPE_MISMATCH, f"a comparison mixes {shown} values{where}: compare values of one kind")


def _operands(node: exp.Expr) -> Iterator[exp.Expr]:
    if isinstance(node, exp.Case):
        yield node.this
        yield from (branch.this for branch in node.args.get("ifs") or [])
    elif isinstance(node, exp.In):
        yield node.this
        yield from node.expressions
    else:
        yield from (child for child in node.iter_expressions() if child.arg_key != "ignore_nulls")


def _kind(node: exp.Expr) -> Kind | None:
    """The kind of a node's type; None for NULL and for what the annotator could not type (never compared)."""
    data_type = node.type
    if data_type is None:
        return None
    if data_type.this in exp.DataType.TEXT_TYPES:
        return Kind.TEXT
    if data_type.this in exp.DataType.NUMERIC_TYPES:
        return Kind.NUMBER
    if data_type.this in exp.DataType.TEMPORAL_TYPES:
        return Kind.DATE
    if data_type.this is DataType.BOOLEAN:
        return Kind.BOOLEAN
    return None
