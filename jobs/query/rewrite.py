"""Stage five: the executable form of a validated query, carrying the evidence output control needs.

For each table reference ``i`` of the outer FROM/JOIN (in that order) one column is appended:
``COUNT(DISTINCT <alias>.<privacy unit>) AS "__units_<i>"``, the number of distinct privacy units
behind each output row. Through a derived table the privacy-unit column is first added to the
derived table's projection as ``"__pu_<i>"``. Rows, their order and the other columns are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from core.schema import DatasetSchema

UNITS_PREFIX = "__units_"
PASSED_UNIT_PREFIX = "__pu_"


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
    items = [query.args["from_"].this, *(join.this for join in query.args.get("joins") or [])]
    names: list[str] = []
    for position, item in enumerate(items):
        name = f"{UNITS_PREFIX}{position}"
        if len(items) == 1 and _base_table(item) in unique_units:
            query.append("expressions", exp.alias_(exp.Count(this=exp.Star()), name, quoted=True))
            names.append(name)
            continue
        units = exp.Count(this=exp.Distinct(expressions=[_unit_column(item, position, schemas)]))
        query.append("expressions", exp.alias_(units, name, quoted=True))
        names.append(name)
    return query, tuple(names)


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
