"""Output shape: every output column is one allowed aggregate, or is built only from GROUP BY keys.

A column outside an aggregate that is not (part of) a GROUP BY key would put one row's value in
the result, so it is refused as row-level output; the same holds in HAVING and ORDER BY. Each
output column holds at most one aggregate, so that output control knows which rule applies to it.
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
        kind = OutputKind.AGGREGATE if aggregates else OutputKind.GROUP_KEY
        outputs.append(OutputColumn(name, kind, aggregate_of(aggregates[0]) if aggregates else None))
    if not group and all(output.kind is OutputKind.GROUP_KEY for output in outputs):
        raise violation(QueryRule.ROW_LEVEL_OUTPUT, "the query returns rows: aggregate (COUNT, SUM, ...) and GROUP BY dimensions instead")
    having = select.args.get("having")
    if having is not None:
        require_group_keys(having.this, group, "HAVING", name_of)
    return tuple(outputs)


def check_order(select: exp.Select, outputs: Sequence[OutputColumn], name_of: Namer) -> None:
    """ORDER BY sorts by output names, group keys or aggregates, never by a row value."""
    order = select.args.get("order")
    if order is None:
        return
    names = {output.name for output in outputs}
    for ordered in order.expressions:
        if not is_output_ref(ordered.this, names):
            require_group_keys(ordered.this, group_keys(select), "ORDER BY", name_of)


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
