"""Failure carries no secret: after validation, nothing a query computes can raise on a data value.

Whether a job fails is released like its numbers. In DuckDB a CAST raises on a value it cannot
convert, integer arithmetic raises on overflow, and comparing a text column with a number casts
every row's text. With those, ``CAST(CASE WHEN race = 5 AND income > t THEN 'x' ELSE '1' END AS INT)``
fails exactly when a condition on one person holds, and a binary search needs 19 jobs. So:

- every CAST (and ``::``) runs as TRY_CAST: an unconvertible value becomes NULL instead of an error;
  CAST to DECIMAL is refused (``jobs.query.functions``);
- arithmetic (``+``, ``-``, ``*``, unary minus, ABS, and ROUND's value) runs on DOUBLE operands, which
  reach infinity instead of raising; ``%`` and ``//`` are not allowed; arithmetic is on numbers only
  (date arithmetic can leave the range of dates and raise);
- a division's divisor is ``NULLIF(divisor, 0)``: dividing by zero gives NULL, whatever the engine's
  settings (``error_on_division_by_zero``);
- a literal that DuckDB would read as DECIMAL (``1.5``) or as an integer wider than BIGINT is written
  as a DOUBLE wherever values meet (comparisons, IN, BETWEEN, CASE, COALESCE, arithmetic): DuckDB
  unifies ``age = 1.000000000000000000000000000001`` as DECIMAL(38,30), and casting a large
  ``age`` to it raises;
- a comparison, IN list, BETWEEN, CASE value, COALESCE, NULLIF, LEAST or GREATEST whose operands are
  of different kinds (text, number, date, boolean) is refused (rule ``type_mismatch``): DuckDB
  would cast row values to make them agree. Write date literals as ``DATE '2020-01-01'``;
- a condition (WHERE, ON, CASE WHEN, IF, AND, OR, NOT, IS TRUE) must be a boolean, never a text,
  number or date column (rule ``type_mismatch``): DuckDB casts ``WHERE industry`` row by row.

Aggregates over the columns' own types cannot raise (sums of integers widen to HUGEINT; STDDEV of
infinity is NaN). ``tests/jobs/test_query_safety.py`` runs every allowed function over extreme
values (NaN, infinities, the largest integers, empty text, NULL) to keep that true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum

from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

from core.schema import DatasetSchema
from jobs.query.model import QueryRule, violation
from jobs.query.resolve import SQL_TYPES
from jobs.query.spelling import Spelling

DataType = exp.DataType.Type


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"


_INEXACT = frozenset({DataType.FLOAT, DataType.DOUBLE})
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Abs)
_COMPARED = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In, exp.Nullif, exp.Coalesce, exp.Least, exp.Greatest)
# Where DuckDB brings operands to one type: a DECIMAL or extra-wide literal there is written as a DOUBLE.
_UNIFYING = (*_COMPARED, exp.Case, exp.If, *_ARITHMETIC, exp.Div, exp.Paren)
_BIGINT = range(-(2**63), 2**63)


def make_safe(select: exp.Select, schemas: Mapping[str, DatasetSchema], spelling: Spelling) -> None:
    """Refuse comparisons across kinds and conditions that are not booleans, then rewrite ``select`` in place
    so that no value can make it raise. ``spelling`` is the parse's (``jobs.query.spelling``)."""
    schema: dict[str, object] = {name: {column: SQL_TYPES[spec.type] for column, spec in s.columns.items()} for name, s in schemas.items()}
    annotate_types(select, schema=schema, dialect=spelling)
    for node in list(select.walk()):
        if isinstance(node, _COMPARED) or (isinstance(node, exp.Case) and node.args.get("this") is not None):
            _check_kinds(node)
        elif isinstance(node, (*_ARITHMETIC, exp.Div)) and {_kind(operand) for operand in node.iter_expressions()} - {Kind.NUMBER, None}:
            raise violation(QueryRule.TYPE_MISMATCH, f"{node.key.upper()} computes on numbers only, not on text, dates or booleans")
        for condition in _conditions(node):
            _check_condition(condition)
    for node in list(select.walk()):
        if type(node) is exp.Cast:
            node.replace(exp.TryCast(this=node.this, to=node.to))
        elif isinstance(node, exp.Literal) and isinstance(node.parent, _UNIFYING) and _wider_than_double(node):
            _wrap(node, lambda value: exp.Cast(this=value, to=exp.DataType.build("DOUBLE")))
    for node in reversed(list(select.walk())):  # children before their parents
        if isinstance(node, (*_ARITHMETIC, exp.Round)):
            _compute_in_double(node)
        if isinstance(node, exp.Div):
            divisor = node.expression
            if not (divisor.is_number and float(divisor.to_py()) != 0):
                _wrap(divisor, lambda value: exp.Nullif(this=value, expression=exp.Literal.number(0)))


def _compute_in_double(node: exp.Expr) -> None:
    """Arithmetic with a value that is not a literal: every operand that is not already DOUBLE becomes one."""
    operands = [node.this] if isinstance(node, exp.Round) else list(node.iter_expressions())
    if all(_is_literal(operand) for operand in operands):
        return  # a constant: it raises, if at all, whatever the data
    for operand in operands:
        if not _is_literal(operand) and not _is_double(operand):
            _wrap(operand, lambda value: exp.TryCast(this=value, to=exp.DataType.build("DOUBLE")))


def _wrap(node: exp.Expr, wrapper: Callable[[exp.Expr], exp.Expr]) -> None:
    """Put ``wrapper(node)`` where ``node`` is, keeping the node itself (and its annotated type)."""
    placeholder = exp.Null()
    node.replace(placeholder)
    placeholder.replace(wrapper(node))


def _is_double(node: exp.Expr) -> bool:
    """Whether DuckDB computes ``node`` as DOUBLE (or FLOAT) once the operands below it were rewritten."""
    node = node.unnest()
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.this in _INEXACT
    if isinstance(node, exp.Column):
        return node.type is not None and node.type.this in _INEXACT
    if isinstance(node, exp.Div):
        return True
    if isinstance(node, (exp.Floor, exp.Ceil)):
        return _is_double(node.this)
    if isinstance(node, (*_ARITHMETIC, exp.Round)):
        operands = [node.this] if isinstance(node, exp.Round) else list(node.iter_expressions())
        return any(_is_double(operand) for operand in operands)
    return False


def _is_literal(node: exp.Expr) -> bool:
    node = node.unnest()
    if isinstance(node, exp.Neg):
        node = node.this.unnest()
    return isinstance(node, (exp.Literal, exp.Null))


def _wider_than_double(node: exp.Literal) -> bool:
    """A number literal DuckDB reads as DECIMAL (``1.5``) or as an integer wider than BIGINT."""
    if not node.is_number:
        return False
    text = node.name
    if any(mark in text for mark in "eE"):
        return False  # already a DOUBLE
    if "." in text:
        return True
    return int(text) not in _BIGINT


def _conditions(node: exp.Expr) -> Iterator[exp.Expr]:
    """The operands of ``node`` that DuckDB reads as true or false."""
    if isinstance(node, (exp.Where, exp.Not)) or (isinstance(node, exp.If) and not _in_simple_case(node)):
        yield node.this
    elif isinstance(node, exp.Join) and node.args.get("on") is not None:
        yield node.args["on"]
    elif isinstance(node, (exp.And, exp.Or)):
        yield from (node.this, node.expression)
    elif isinstance(node, exp.Is) and isinstance(node.expression, exp.Boolean):
        yield node.this


def _in_simple_case(node: exp.If) -> bool:
    """A WHEN of ``CASE x WHEN v THEN ...``: ``v`` is a value compared with ``x``, not a condition."""
    return isinstance(node.parent, exp.Case) and node.parent.args.get("this") is not None


def _check_condition(node: exp.Expr) -> None:
    kind = _kind(node)
    if kind not in (Kind.BOOLEAN, None):
        column = next(node.find_all(exp.Column), None)
        where = f" (column {column.name})" if column is not None else ""
        raise violation(QueryRule.TYPE_MISMATCH, f"a condition must be a comparison or a boolean, not a {kind.value} value{where}")


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
