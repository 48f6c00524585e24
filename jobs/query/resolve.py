"""Stage three: resolve every column to the dataset column it reads, with sqlglot's qualifier.

``qualify`` (with a schema built from the grant's dataset schemas) names every table reference, puts
the table alias on every column it can resolve, expands references to SELECT aliases in WHERE,
GROUP BY and HAVING, and names every output column. What it leaves unresolved is refused here as an
unknown or ambiguous column. A derived table's columns keep their dataset column's identity.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify

from core.errors import PolicyViolation
from core.schema import DatasetSchema
from core.values import ColumnType
from jobs.query.model import QueryRule, violation
from jobs.query.spelling import Spelling

SQL_TYPES = {
    ColumnType.INT: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.STRING: "VARCHAR",
    ColumnType.BOOL: "BOOLEAN",
    ColumnType.DATE: "DATE",
    ColumnType.PAILLIER: "BLOB",  # never usable in a query (``uses.check_use`` refuses it); typed for the qualifier
}


@dataclass(frozen=True)
class ColumnRef:
    """One column occurrence, resolved: which dataset column, read through which table reference."""

    dataset: str
    column: str
    alias: str

    @property
    def qualified(self) -> str:
        return f"{self.dataset}.{self.column}"


@dataclass(frozen=True)
class Source:
    """A table reference of one SELECT: a dataset, or a derived table over one dataset."""

    alias: str
    dataset: str
    columns: Mapping[str, str]  # name visible through this reference -> dataset column


def qualify_query(select: exp.Select, schemas: Mapping[str, DatasetSchema], spelling: Spelling) -> exp.Select:
    """``select`` qualified, in place (the caller's own parse): the tree that is validated is the tree that runs.

    ``spelling`` is the one ``parse_select`` used: names the qualifier adds are spelled as the parse spelled them.
    """
    schema: dict[str, object] = {
        name: {column: SQL_TYPES[spec.type] for column, spec in dataset.columns.items()} for name, dataset in schemas.items()
    }
    try:
        return qualify(select, dialect=spelling, schema=schema, validate_qualify_columns=False, identify=True)
    except OptimizeError as exc:
        raise _refusal(str(exc)) from None


def _refusal(error: str) -> PolicyViolation:
    """The qualifier's error as a rule; only an identifier from the query is repeated, never a literal."""
    name = re.search(r": (\w+)$", error)
    if error.startswith("Alias already used") and name:
        return violation(QueryRule.AMBIGUOUS_COLUMN, f"table alias {name[1]} is used twice: give each table reference its own alias")
    if "mbiguous" in error:
        return violation(QueryRule.AMBIGUOUS_COLUMN, "a column name is ambiguous: qualify it with its table alias")
    if error.startswith("Unknown column") and name:
        return violation(QueryRule.UNKNOWN_COLUMN, f"column {name[1]} is not a column of the table it is qualified with")
    return violation(QueryRule.UNKNOWN_COLUMN, "a column could not be resolved against the datasets of this grant")


def sources_of(select: exp.Select, schemas: Mapping[str, DatasetSchema]) -> dict[str, Source]:
    """Table references of a qualified SELECT by alias. Derived tables must already be checked (columns only)."""
    from_ = select.args["from_"]
    joins: list[exp.Join] = select.args.get("joins") or []
    sources: dict[str, Source] = {}
    for item in [from_.this, *(join.this for join in joins)]:
        source = _source(item, schemas)
        if source.alias in sources:
            raise violation(QueryRule.AMBIGUOUS_COLUMN, f"table reference {source.alias} appears twice: give each an alias")
        sources[source.alias] = source
    return sources


def _source(item: exp.Expr, schemas: Mapping[str, DatasetSchema]) -> Source:
    if isinstance(item, exp.Table):
        return Source(item.alias_or_name, item.name, {column: column for column in schemas[item.name].columns})
    assert isinstance(item, exp.Subquery)
    assert isinstance(item.this, exp.Select)
    inner = item.this
    table = inner.args["from_"].this
    columns = {projection.alias_or_name: projection.unalias().name for projection in inner.expressions}
    return Source(item.alias, table.name, columns)


def resolve(column: exp.Column, sources: Mapping[str, Source], outer: Collection[str]) -> ColumnRef:
    """The dataset column behind ``column``; ``outer`` are the aliases of enclosing queries (correlation)."""
    if column.args.get("db") or column.args.get("catalog"):
        raise violation(QueryRule.UNKNOWN_COLUMN, "column names have at most one qualifier: table_or_alias.column")
    name, table = column.name, column.table
    if not table:
        owners = [source for source in sources.values() if name in source.columns]
        if len(owners) > 1:
            tables = " and ".join(sorted(source.alias for source in owners))
            raise violation(QueryRule.AMBIGUOUS_COLUMN, f"column {name} is ambiguous (in {tables}): qualify it with its table alias")
        if not owners:
            raise violation(QueryRule.UNKNOWN_COLUMN, f"column {name} is not a column of the tables in this query")
        table = owners[0].alias
    source = sources.get(table)
    if source is None:
        if table in outer:
            raise violation(QueryRule.SUBQUERY, "correlated subqueries are not allowed: a subquery reads only its own tables")
        raise violation(QueryRule.UNKNOWN_COLUMN, f"{table}.{name} does not name a table of this query")
    dataset_column = source.columns.get(name)
    if dataset_column is None:
        raise violation(QueryRule.UNKNOWN_COLUMN, f"column {name} is not a column of {table}")
    return ColumnRef(source.dataset, dataset_column, source.alias)
