"""How a query's identifiers are spelled: dataset and column names as declared, aliases as first written.

DuckDB matches identifiers without regard to case, quoted or not; sqlglot models that by lower-casing
every identifier, which would show ``Total`` as ``total`` and cannot reach a declared ``Yrs.Since.PhD``
(nor ``Énergie``: DuckDB itself folds ASCII letters only). Instead, every identifier whose
``core.names.name_key`` (NFC, then case folding) is that of a declared name is spelled exactly as
declared, and every other one as the analyst first wrote it as an alias (``AS "Total"`` is then
``Total`` wherever it is referred to). The tree that is validated and run thus names every dataset
and column byte for byte as stored, and every output as the analyst wrote it.

``Spelling`` is a DuckDB dialect whose identifier normalisation does this; it is made per query, from
the grant's schemas, and handed to sqlglot wherever it normalises (parse, qualify, type annotation).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from core.names import name_key
from core.schema import DatasetSchema
from jobs.query.model import QueryRule, violation


class Spelling(DuckDB):
    """DuckDB, with identifiers spelled as declared or first written instead of lower-cased.

    ``tables`` and ``columns`` map name keys to declared spellings. Where a dataset and a column share a
    key but not a spelling (a dataset ``Sales`` with a column ``sales``), the identifier's place decides:
    a table reference (``FROM x``, the ``x`` of ``x.col``) takes the dataset's, a column the column's, and
    anything else (an alias, or a name sqlglot normalises out of the tree) stays as it is.
    """

    def __init__(self, tables: Mapping[str, str], columns: Mapping[str, str]) -> None:
        super().__init__()
        self.tables, self.columns = dict(tables), dict(columns)
        self.aliases: dict[str, str] = {}

    def normalize_identifier(self, expression: exp.Expr) -> exp.Expr:  # type: ignore[override]
        if isinstance(expression, exp.Identifier):
            expression.set("this", self._spelled(expression))
        return expression

    def _spelled(self, identifier: exp.Identifier) -> str:
        key = name_key(identifier.this)
        table, column = self.tables.get(key), self.columns.get(key)
        if table is not None and column is not None and table != column:
            parent, place = identifier.parent, identifier.arg_key
            if (isinstance(parent, exp.Table) and place == "this") or (isinstance(parent, exp.Column) and place == "table"):
                return table
            return column if isinstance(parent, exp.Column) and place == "this" else str(identifier.this)
        return table or column or self.aliases.get(key) or str(identifier.this)

    def adopt_aliases(self, tree: exp.Expr) -> None:
        """Spell each alias the query defines as first written, unless it is a declared name."""
        for node in tree.walk():
            if isinstance(node, exp.Alias | exp.TableAlias):
                identifier = node.args.get("alias") if isinstance(node, exp.Alias) else node.this
                if isinstance(identifier, exp.Identifier):
                    self.aliases.setdefault(name_key(identifier.this), identifier.this)


def spelling_of(schemas: Mapping[str, DatasetSchema]) -> Spelling:
    """The declared names of the grant's datasets and of their columns. Two datasets, or two columns, whose
    names differ only in case cannot be queried together: nothing in a query tells them apart."""
    tables: dict[str, str] = {}
    columns: dict[str, str] = {}
    for dataset, schema in schemas.items():
        _add(tables, dataset)
        for column in schema.columns:
            _add(columns, column)
    return Spelling(tables, columns)


def _add(spellings: dict[str, str], name: str) -> None:
    first = spellings.setdefault(name_key(name), name)
    if first != name:
        raise violation(
            QueryRule.AMBIGUOUS_COLUMN,
            f"the names {first!r} and {name!r} in this grant's datasets differ only in case or Unicode normal form, "
            "so a query cannot tell them apart; ask the stewards to rename one",
        )
