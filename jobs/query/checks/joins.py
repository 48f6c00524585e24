"""Join conditions: ``ON`` is an AND of equalities, each between bare join-key columns of two table references.

Each equality must link the table being joined to a table joined before it, so that no join
degenerates into a cross product (``JOIN c ON a.pid = b.pid`` does not constrain ``c``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from sqlglot import exp

from jobs.query.model import QueryRule, violation
from jobs.query.resolve import ColumnRef
from jobs.query.uses import Place

Check = Callable[[exp.Column, Place], ColumnRef]  # resolves a column and checks its use at a place


def check_join(join: exp.Join, alias: str, earlier: Collection[str], check: Check) -> None:
    """Refuse a join condition that is not an AND of join-key equalities linking ``alias`` to an earlier table."""
    for conjunct in _conjuncts(join.args["on"]):
        if not isinstance(conjunct, exp.EQ):
            raise violation(QueryRule.JOIN_CONDITION, "ON must be an AND of equalities between join-key columns (a.key = b.key)")
        sides = [_unparen(conjunct.this), _unparen(conjunct.expression)]
        columns = [side for side in sides if isinstance(side, exp.Column)]
        if len(columns) != 2:
            raise violation(QueryRule.JOIN_CONDITION, "join keys are compared as bare columns, without functions, arithmetic or literals")
        left, right = (check(column, Place.JOIN) for column in columns)
        if left.alias == right.alias or alias not in (left.alias, right.alias):
            raise violation(QueryRule.JOIN_CONDITION, "each equality in ON must compare a key of the joined table with another table's")
        other = right.alias if left.alias == alias else left.alias
        if other not in earlier:
            raise violation(QueryRule.JOIN_CONDITION, "each equality in ON must link the joined table to a table named before it")


def _conjuncts(node: exp.Expr) -> Iterator[exp.Expr]:
    node = _unparen(node)
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node
