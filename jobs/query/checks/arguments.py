"""What an aggregate may aggregate: a measure column, or arithmetic of measure columns with each other.

Output control checks a released number on the privacy units whose values it depends on. An
argument that mixes a measure with constants or row-dependent branches breaks that: in
``SUM(CASE WHEN race = 5 THEN income ELSE 100000 END)`` every other person contributes a constant
the analyst knows, so the cell passes on many units and still equals one person's income plus a
known number. Indicator arithmetic (``income * (race = 5)``), casts of comparisons, ``COALESCE``,
``NULLIF``, ``GREATEST``/``LEAST`` with constants, and comparisons of a measure
(``COUNT(DISTINCT income > 50000)``, ``MAX(income >= x)``) do the same. So the argument of every
aggregate is, deny by default:

- ``COUNT(*)``, ``COUNT(column)`` or ``COUNT(DISTINCT column)``: one bare column, nothing computed;
- for every other aggregate, one bare measure or plain column, or ``+``, ``-``, ``*`` and unary
  minus over measure columns only (no literal anywhere: ``income - income + 1`` is a constant).

Division is not allowed: ``income / income`` is an indicator of a non-zero income. Which columns
are measures is the policy's column use (``jobs.query.uses``), checked there as well.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from jobs.query.functions import name_of
from jobs.query.model import QueryRule, violation
from policies.model import ColumnUse

UseOf = Callable[[exp.Column], ColumnUse]  # the effective use of a column occurrence
Namer = Callable[[exp.Column], str]  # "dataset.column" of a column occurrence

_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Paren)
_RULE = "aggregate arguments must be a measure column or arithmetic of measures; constants and branches are refused"


def check_argument(call: exp.Expr, use_of: UseOf, name: Namer) -> None:
    """Refuse an aggregate whose argument is anything but the forms above, naming the aggregate and a column."""
    argument = call.this
    if type(call) is exp.Count:
        if argument is None or isinstance(argument, exp.Star):  # COUNT(), COUNT(*)
            return
        if isinstance(argument, exp.Distinct):
            argument = argument.expressions[0]
        if not isinstance(argument, exp.Column):
            _refuse(call, argument, name, "COUNT counts rows (*) or the values of one bare column")
        return
    if isinstance(argument, exp.Column):
        return  # its use (measure, plain, or a dimension that is refused) is checked by jobs.query.uses
    _check_arithmetic(call, argument, use_of, name)


def _check_arithmetic(call: exp.Expr, node: exp.Expr, use_of: UseOf, name: Namer) -> None:
    if isinstance(node, exp.Column):
        if use_of(node) is not ColumnUse.MEASURE:
            _refuse(call, node, name, "arithmetic inside an aggregate combines measure columns only")
        return
    if type(node) not in _ARITHMETIC:
        _refuse(call, node, name, _RULE)
    for child in node.iter_expressions():
        _check_arithmetic(call, child, use_of, name)


def _refuse(call: exp.Expr, node: exp.Expr, name: Namer, reason: str) -> None:
    column = node if isinstance(node, exp.Column) else next(node.find_all(exp.Column), None)
    if column is None:
        column = next(call.find_all(exp.Column), None)
    shown = name(column) if column is not None else None
    where = f"{name_of(call)} of {shown}" if shown else name_of(call)
    comparison = " (comparisons of a measure are refused everywhere)" if node.find(exp.Predicate, exp.Connector) else ""
    raise violation(QueryRule.AGGREGATE_ARGUMENT, f"{where}: {reason}{comparison}", shown)
