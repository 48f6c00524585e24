"""The populations behind a job's rows, for the release audit (``policies.audit``).

A population is the set of privacy units a released number depends on, as a roaring bitmap of the
units' *indices* in the dataset version: a unit's index is its position in the order in which the
version's rows first name it (Arrow's ``unique``/``dictionary_encode`` order). Versions are immutable,
so the index is stable for as long as the version exists, whatever engine or library version
computes it later; it is the same for every kind (query, stats, he) and every organisation.

Why indices and not hashes of the identifiers: a stored bitmap names no one. A hash, even a keyed
one, lets whoever holds the key test a guessed identifier; an index can only be turned back into a
unit by decrypting the version itself. Indices are also dense, so the bitmaps are 32-bit, compact
and fast (a random 64-bit hash per unit made bitmaps ~25 times larger and ~15 times slower to build).
The bitmaps are sealed at rest like outputs (``sandbox.runtime.release_audit``).

The population run is the job's own plan, planned to count units distinctly, with every
``__units_<i>`` count replaced by the list of the distinct units it counts: one run gives each
row's values and its population, matched by row -- never by group key, so hidden, NaN or repeated
keys cannot mislead it -- and the unit counts are the lists' lengths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from pyroaring import BitMap
from sqlglot import exp

UNITS_PREFIX = "__units_"


def population_sql(sql: str) -> str:
    """``sql`` with each ``COUNT(DISTINCT u) AS "__units_<i>"`` replaced by ``LIST(DISTINCT u)`` of the non-null ``u``.

    ``sql`` must count units distinctly (planned without the one-row-per-unit shortcut, whose
    ``COUNT(*)`` names no unit): a plan that does not is refused here rather than audited wrongly.
    """
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    found = 0
    for alias in list(tree.find_all(exp.Alias)):
        if not alias.alias.startswith(UNITS_PREFIX):
            continue
        count = alias.this
        if not isinstance(count, exp.Count):
            continue  # a reference to the count, e.g. an outer SELECT passing it on
        if not isinstance(count.this, exp.Distinct):
            raise ValueError(f"{alias.alias} does not count units distinctly")
        unit = count.this.expressions[0]
        listed = exp.Anonymous(this="list", expressions=[exp.Distinct(expressions=[unit.copy()])])
        alias.set("this", exp.Filter(this=listed, expression=exp.Where(this=exp.Not(this=exp.Is(this=unit.copy(), expression=exp.Null())))))
        found += 1
    if not found:
        raise ValueError("the plan counts no privacy units")
    return tree.sql(dialect="duckdb")


def query_unit_datasets(sql: str) -> list[str]:
    """The dataset behind each ``__units_<i>`` of a query plan: its outer FROM/JOIN table references, in order."""
    select = sqlglot.parse_one(sql, dialect="duckdb")
    assert isinstance(select, exp.Select)
    items = [select.args["from_"].this, *(join.this for join in select.args.get("joins") or [])]
    names = []
    for item in items:
        base = item.this.args["from_"].this if isinstance(item, exp.Subquery) else item
        assert isinstance(base, exp.Table)
        names.append(base.name)
    return names


def unit_dictionary(table: pa.Table, unit: str) -> pa.Array:
    """The version's distinct units in order of first appearance: a unit's position is its index."""
    return pc.unique(table.column(unit).combine_chunks()).drop_null()


def split(raw: pa.Table, dictionaries: Mapping[str, pa.Array]) -> tuple[pa.Table, dict[str, list[BitMap]]]:
    """The population run's table with unit counts in place of the lists, and each unit column's populations per row.

    ``dictionaries`` maps each ``__units_<i>`` column to the dictionary of the dataset it counts.
    """
    populations: dict[str, list[BitMap]] = {}
    for name, dictionary in dictionaries.items():
        lists = raw.column(name).combine_chunks()
        flat = pc.index_in(lists.flatten(), value_set=dictionary)
        if flat.null_count:
            raise ValueError(f"{name} names a unit that is not in its dataset version")
        indices = flat.to_numpy(zero_copy_only=False).astype(np.uint32)
        offsets = lists.offsets.to_numpy()
        populations[name] = [BitMap(indices[offsets[i] : offsets[i + 1]]) for i in range(len(lists))]
        counts = pc.fill_null(pc.list_value_length(lists), 0).cast(pa.int64())
        raw = raw.set_column(raw.schema.get_field_index(name), name, counts)
    return raw, populations


def group_populations(index: np.ndarray, units: np.ndarray, groups: int) -> list[BitMap]:
    """Each group's units, from per-row group and unit indices (``units`` < 0: no unit)."""
    valid = units >= 0
    order = np.argsort(index[valid], kind="stable")
    grouped, members = index[valid][order], units[valid][order].astype(np.uint32)
    bounds = np.searchsorted(grouped, np.arange(groups + 1))
    return [BitMap(members[bounds[g] : bounds[g + 1]]) for g in range(groups)]


def by_version(columns: Sequence[tuple[str, str]], populations: Mapping[str, list[BitMap]], rows: int) -> dict[str, list[BitMap]]:
    """Per dataset version, each row's population: the union over the unit columns that count that version.

    ``columns`` pairs each ``__units_<i>`` column with the version it counts; a query joining a
    dataset to itself counts it twice, and anyone behind either side belongs to the row.
    """
    out: dict[str, list[BitMap]] = {}
    for column, version in columns:
        rows_of = out.setdefault(version, [BitMap() for _ in range(rows)])
        for row, population in enumerate(populations[column]):
            rows_of[row] |= population
    return out
