"""Column use rules: where in a query each column may appear, by the use its grant's policy gives it.

Every column occurrence is found with the *place* it sits in (a join condition, a filter, a group
key, a value inside an aggregate or a condition inside one) and checked against the column's use:

- ``deny``: nowhere; ``join_key``: JOIN ... ON only;
- ``dimension``: filters, group keys, conditions inside aggregates, and the argument of COUNT;
- ``measure``: inside aggregates only; ``plain``: anywhere a dimension or a measure may be.

Identifiers and the privacy-unit column are never more than ``join_key``, whatever the policy says:
they are compared in joins, never computed on. ``COUNT(DISTINCT <privacy unit>)`` is always allowed
when ``count_distinct`` is: it is the number of people, which output control counts anyway.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlglot import exp

from core.schema import DatasetSchema
from core.values import ColumnType
from jobs.query.functions import aggregate_of, is_aggregate
from jobs.query.model import QueryRule, violation
from jobs.query.resolve import ColumnRef
from policies.model import ALLOWED_USES, Aggregate, ColumnUse, Policy


class Place(StrEnum):
    JOIN = "join"  # JOIN ... ON
    FILTER = "filter"  # WHERE
    GROUP = "group"  # GROUP BY, and outside aggregates in SELECT, HAVING, ORDER BY
    AGG_VALUE = "aggregate value"  # what an aggregate aggregates
    AGG_CONDITION = "aggregate condition"  # a condition inside an aggregate: SUM(CASE WHEN sex = 1 THEN income END)
    DERIVED = "derived table"  # projected by a derived table; its use is checked where the outer query uses it


@dataclass(frozen=True)
class Occurrence:
    column: exp.Column
    place: Place
    aggregate: exp.Expr | None  # the enclosing aggregate, if any


_COUNTS = frozenset({Aggregate.COUNT, Aggregate.COUNT_DISTINCT})
_PLACES: dict[ColumnUse, frozenset[Place]] = {
    ColumnUse.DENY: frozenset(),
    ColumnUse.JOIN_KEY: frozenset({Place.JOIN, Place.DERIVED}),
    ColumnUse.DIMENSION: frozenset({Place.FILTER, Place.GROUP, Place.AGG_CONDITION, Place.DERIVED}),
    ColumnUse.MEASURE: frozenset({Place.AGG_VALUE, Place.AGG_CONDITION, Place.DERIVED}),
    ColumnUse.PLAIN: frozenset({Place.FILTER, Place.GROUP, Place.AGG_VALUE, Place.AGG_CONDITION, Place.DERIVED}),
}


def occurrences(node: exp.Expr, place: Place, aggregate: exp.Expr | None = None) -> Iterator[Occurrence]:
    """Every column in ``node`` with its place; nested SELECTs are their own scope and are skipped."""
    if isinstance(node, exp.Column):
        yield Occurrence(node, place, aggregate)
        return
    if isinstance(node, exp.Subquery | exp.Select):
        return
    if is_aggregate(node):
        if place is not Place.GROUP:
            raise violation(QueryRule.AGGREGATE_NOT_ALLOWED, "aggregates belong in SELECT, HAVING or ORDER BY, not WHERE, ON or GROUP BY")
        for child in node.iter_expressions():
            yield from occurrences(child, Place.AGG_VALUE, node)
        return
    if place is Place.AGG_VALUE and isinstance(node, exp.Predicate | exp.Connector | exp.Not):
        place = Place.AGG_CONDITION
    for child in node.iter_expressions():
        inner = place
        if place is Place.AGG_VALUE and isinstance(node, exp.Case | exp.If) and child.arg_key == "this":
            inner = Place.AGG_CONDITION  # CASE <x> WHEN <y>, WHEN <condition>, IF(<condition>, ...)
        yield from occurrences(child, inner, aggregate)


def effective_use(policy: Policy, schemas: Mapping[str, DatasetSchema], ref: ColumnRef) -> ColumnUse:
    """The policy's use, narrowed to what the column's role and the privacy unit can ever be granted."""
    schema = schemas[ref.dataset]
    spec = schema.column(ref.column)
    use = policy.use_of(ref.dataset, ref.column)
    if spec is None or use not in ALLOWED_USES[spec.role]:
        return ColumnUse.DENY
    if ref.column == schema.privacy_unit and use is not ColumnUse.JOIN_KEY:
        return ColumnUse.DENY
    return use


def check_use(occurrence: Occurrence, ref: ColumnRef, policy: Policy, schemas: Mapping[str, DatasetSchema]) -> None:
    """Refuse a column occurrence its use does not allow, naming the column and the rule."""
    name = ref.qualified
    spec = schemas[ref.dataset].column(ref.column)
    if spec is not None and spec.type is ColumnType.PAILLIER:
        raise violation(QueryRule.ENCRYPTED_COLUMN, f"column {name} is encrypted (paillier): only he jobs can aggregate it", name)
    if _is_unit_count(occurrence, ref, policy, schemas):
        return
    use = effective_use(policy, schemas, ref)
    place = occurrence.place
    if use is ColumnUse.DENY:
        raise violation(QueryRule.COLUMN_DENIED, f"column {name} may not be used under this grant", name)
    if place in _PLACES[use]:
        return
    if place is Place.JOIN:
        raise violation(QueryRule.JOIN_CONDITION, f"column {name} is a {use.value}, not a join key: it cannot be in JOIN ... ON", name)
    if use is ColumnUse.JOIN_KEY:
        message = f"column {name} is a join key: it may only be used in JOIN ... ON a.key = b.key"
        raise violation(QueryRule.JOIN_KEY_ONLY_IN_JOIN, message, name)
    if use is ColumnUse.MEASURE:
        raise violation(QueryRule.MEASURE_OUTSIDE_AGGREGATE, f"column {name} may only be used inside an aggregate", name)
    kind = aggregate_of(occurrence.aggregate) if occurrence.aggregate is not None else None
    if kind in _COUNTS:
        return
    raise violation(
        QueryRule.DIMENSION_AS_MEASURE,
        f"column {name} is a dimension: group or filter by it, count it, or use it in a condition inside an aggregate, "
        "but do not aggregate its values",
        name,
    )


def _is_unit_count(occurrence: Occurrence, ref: ColumnRef, policy: Policy, schemas: Mapping[str, DatasetSchema]) -> bool:
    """COUNT(DISTINCT <privacy-unit column>), the column bare: the number of people behind a cell."""
    distinct = occurrence.column.parent
    return (
        isinstance(distinct, exp.Distinct)
        and isinstance(distinct.parent, exp.Count)
        and distinct.parent is occurrence.aggregate
        and ref.column == schemas[ref.dataset].privacy_unit
        and Aggregate.COUNT_DISTINCT in policy.aggregates
    )
