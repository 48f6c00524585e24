"""Output shape: every output column is one bare aggregate, or is built only from GROUP BY keys.

A column outside an aggregate that is not (part of) a GROUP BY key would put one row's value in
the result, so it is refused as row-level output; the same holds in ORDER BY. The result's shape
carries no secret either:

- an aggregate output is the aggregate call itself: anything computed on it (``COUNT(*) * 100``,
  ``CAST(SUM(x) AS TINYINT)``, ``CASE WHEN SUM(x) > t ...``) would undo rounding, fail on a value, or
  carry a suppressed value into a released one, and output control checks the call, not the sum;
- every GROUP BY key is output (no hidden key orders or splits the rows unseen), and is one
  dimension column or a function of one column: no comparison, branch or constant key
  (``GROUP BY race <> 5``, ``GROUP BY CAST('nan' AS DOUBLE)``), which would isolate chosen rows;
- ORDER BY sorts by output group keys only: a position by an aggregate shows a suppressed value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlglot import exp

from jobs.query.functions import aggregate_of, is_aggregate
from jobs.query.model import OutputColumn, OutputKind, QueryRule, violation
from jobs.query.structure import RESERVED_PREFIX

Namer = Callable[[exp.Column], str]  # "dataset.column" of a column occurrence


def classify_outputs(select: exp.Select, name_of: Namer) -> tuple[OutputColumn, ...]:
    """The output columns of a qualified aggregate query, refusing row-level ones."""
    group = group_keys(select)
    outputs: list[OutputColumn] = []
    for projection in select.expressions:
        name = projection.alias_or_name
        if name.startswith(RESERVED_PREFIX) or any(output.name == name for output in outputs):
            message = f"output name {name} is reserved or used twice: output names are unique and do not start with {RESERVED_PREFIX}"
            raise violation(QueryRule.RESERVED_NAME, message)
        expression = projection.unalias()
        aggregates = [node for node in expression.walk() if is_aggregate(node)]
        if len(aggregates) > 1:
            raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, f"output column {name} combines several aggregates: give each its own column")
        require_group_keys(expression, group, f"output column {name}", name_of)
        if aggregates and aggregates[0] is not expression:
            message = f"output column {name} computes on an aggregate: output the aggregate itself, nothing computed on it"
            raise violation(QueryRule.AGGREGATE_OUTPUT, message)
        kind = OutputKind.AGGREGATE if aggregates else OutputKind.GROUP_KEY
        argument = aggregates[0].this if aggregates else None
        shown = None if argument is None or isinstance(argument, exp.Star) else argument.sql(dialect="duckdb")
        outputs.append(OutputColumn(name, kind, aggregate_of(aggregates[0]) if aggregates else None, shown))
    if not group and all(output.kind is OutputKind.GROUP_KEY for output in outputs):
        raise violation(QueryRule.ROW_LEVEL_OUTPUT, "the query returns rows: aggregate (COUNT, SUM, ...) and GROUP BY dimensions instead")
    _check_keys(select, group, name_of)
    return tuple(outputs)


# A key with one of these picks rows by an analyst's choice rather than labelling them by a value.
_NOT_IN_KEYS = (exp.Predicate, exp.Connector, exp.Not, exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Least, exp.Greatest)


def _check_keys(select: exp.Select, group: Sequence[exp.Expr], name_of: Namer) -> None:
    """Each GROUP BY key reads exactly one column through no comparison or branch, and is output as it is grouped."""
    shown = [projection.unalias() for projection in select.expressions]
    for key in group:
        columns = list(key.find_all(exp.Column))
        column = name_of(columns[0]) if columns else None
        if len(columns) != 1 or key.find(*_NOT_IN_KEYS) is not None:
            label = column or "without a column"
            message = f"GROUP BY key {label} must be one column or a function of one column (no comparison, branch or constant)"
            raise violation(QueryRule.GROUP_KEY, message, column)
        if not any(key == expression for expression in shown):
            raise violation(QueryRule.GROUP_KEY, f"GROUP BY key {column} is not output: output every key as it is grouped", column)


def check_order(select: exp.Select, outputs: Sequence[OutputColumn], name_of: Namer) -> None:
    """ORDER BY sorts by output group keys (by name or as grouped), never by an aggregate or a row value."""
    order = select.args.get("order")
    if order is None:
        return
    names = {output.name for output in outputs}
    keys = {output.name for output in outputs if output.kind is OutputKind.GROUP_KEY}
    group = group_keys(select)
    for ordered in order.expressions:
        target = ordered.this
        if is_output_ref(target, names):
            if target.name in keys:
                continue
        else:
            require_group_keys(target, group, "ORDER BY", name_of)
            if any(target == key for key in group):
                continue
        raise violation(QueryRule.ORDER_BY, "ORDER BY sorts by output group keys only: a row's position must not show an aggregate")


def is_output_ref(node: exp.Expr, names: set[str]) -> bool:
    """An unqualified name of an output column (qualify leaves ORDER BY references to outputs so)."""
    return isinstance(node, exp.Column) and not node.table and node.name in names


def group_keys(select: exp.Select) -> list[exp.Expr]:
    group = select.args.get("group")
    return list(group.expressions) if group is not None else []


def require_group_keys(node: exp.Expr, group: Sequence[exp.Expr], where: str, name_of: Namer) -> None:
    column = _uncovered(node, group)
    if column is not None:
        name = name_of(column)
        raise violation(
            QueryRule.ROW_LEVEL_OUTPUT,
            f"column {name} in {where} is neither a GROUP BY key nor inside an aggregate: that would output row values",
            name,
        )


def _uncovered(node: exp.Expr, group: Sequence[exp.Expr]) -> exp.Column | None:
    """The first column outside aggregates and outside every GROUP BY key expression."""
    if any(node == key for key in group):
        return None
    if isinstance(node, exp.Column):
        return node
    if is_aggregate(node) or isinstance(node, exp.Subquery | exp.Select):
        return None
    for child in node.iter_expressions():
        found = _uncovered(child, group)
        if found is not None:
            return found
    return None
