"""The populations behind a query's cells, for the differencing check (``policies.differencing``).

A plan's first distinct unit count is replaced by the list of its units' 64-bit hashes, so that two
cells' populations can be compared exactly as roaring bitmaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import sqlglot
from pyroaring import BitMap64
from sqlglot import exp

from jobs.query.model import QueryPlan
from policies.differencing import Key

UNITS_ALIAS = "__units_0"


def population_sql(plan: QueryPlan) -> str:
    """The plan with its first unit count replaced by the list of the units' hashes (DuckDB's ``hash``)."""
    tree = sqlglot.parse_one(plan.executable_sql, dialect="duckdb")
    for alias in tree.find_all(exp.Alias):
        if alias.alias == UNITS_ALIAS and isinstance(alias.this, exp.Count) and isinstance(alias.this.this, exp.Distinct):
            unit = alias.this.this.expressions[0].copy()
            alias.set("this", exp.ArrayAgg(this=exp.Distinct(expressions=[exp.func("hash", unit)])))
            return tree.sql(dialect="duckdb")
    raise ValueError("the plan has no distinct unit count to turn into a population")


def populations(table: pa.Table, group_keys: Sequence[str]) -> dict[Key, BitMap64]:
    keys = [table.column(k).to_pylist() for k in group_keys]
    lists = table.column(UNITS_ALIAS).to_pylist()
    return {tuple(col[i] for col in keys): BitMap64(lists[i] or []) for i in range(table.num_rows)}
