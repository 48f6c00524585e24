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

The population run is the job's own plan with every ``__units_<i>`` count replaced by a list of
what it counts: one run gives each row's values and its population, matched by row -- never by
group key, so hidden, NaN or repeated keys cannot mislead it -- and the unit counts are the sizes of
the populations. A ``COUNT(DISTINCT u)`` becomes the list of the distinct units, turned into indices
through the version's dictionary. A ``COUNT(*)`` -- the plans' shortcut over one table whose every
row is a different unit, which ingest guarantees when a version's unit count equals its row count
(units are never missing) -- becomes the list of the rows' own positions (``UNIT_INDEX``, a column
the run adds to that table): there a unit's first appearance is its only one, so its position is
its index, and no dictionary or per-unit grouping is needed (at 1M rows this is about ten times
cheaper than listing distinct units and looking each up). Where the run's rows are few -- the plan's
keys have declared domains, so the executor can bound them -- the positions are aggregated as a
bitstring over the version's rows (``bitstring_agg``) rather than a list: setting a bit costs the
engine half what appending to a list does, and a bitstring's 65,536-bit blocks are the bitmap's own
containers, so it becomes a bitmap without listing a position (``_bitstring_bitmap``).
"""

from __future__ import annotations

import array
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from pyroaring import BitMap
from sqlglot import exp

UNITS_PREFIX = "__units_"


UNIT_INDEX = "__unit_index"  # a row's position, added for the population run to a table whose rows are units
CONTAINER_BITS = 2**16  # a roaring bitmap's container: the values sharing their upper 16 bits
BITSTRING_BUDGET = 64 * 2**20  # bytes of bitstrings a run may hold: its rows' bound x the version's rows / 8


@dataclass(frozen=True)
class PopulationRun:
    """The population run's SQL, and the ``__units_<i>`` columns that list row positions (``UNIT_INDEX``), each with its dataset.

    A column over a dataset in ``bitstrings`` gives its positions as a bitstring rather than a list.
    """

    sql: str
    indexed: Mapping[str, str]
    bitstrings: frozenset[str] = frozenset()

    @property
    def indexed_datasets(self) -> frozenset[str]:
        """The datasets the run reads with ``UNIT_INDEX`` added (``with_unit_index``)."""
        return frozenset(self.indexed.values())


def bitstring_datasets(rows: Mapping[str, int], bound: int | None) -> dict[str, int]:
    """The datasets whose positions a run may aggregate as bitstrings: all, if at most ``bound`` result rows
    of one bitstring per version row each fit ``BITSTRING_BUDGET``; none if the rows are unbounded (``None``)."""
    if bound is None:
        return {}
    return {name: count for name, count in rows.items() if bound * _bits(count) // 8 <= BITSTRING_BUDGET}


def _bits(rows: int) -> int:
    """A bitstring's width for a version of ``rows`` rows: whole containers, so that its bytes split into them."""
    return max(1, -(-rows // CONTAINER_BITS)) * CONTAINER_BITS


def population_sql(sql: str, rows_are_units: Collection[str] = frozenset(), bitstrings: Mapping[str, int] | None = None) -> PopulationRun:
    """``sql`` with each ``__units_<i>`` count replaced by a list of what it counts.

    ``COUNT(DISTINCT u)`` becomes ``LIST(DISTINCT u)`` of the non-null ``u``. ``COUNT(*)`` becomes
    ``LIST`` of the rows' ``UNIT_INDEX``, and only over a dataset named in ``rows_are_units`` (every
    row a different unit, none missing): elsewhere a count of rows names no unit, and such a plan is
    refused here rather than audited wrongly. Over a dataset in ``bitstrings`` (name: its row count;
    ``bitstring_datasets`` chooses them) it becomes a ``bitstring_agg`` of the positions instead.
    """
    bitstrings = bitstrings or {}
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    found, indexed = 0, {}
    for alias in list(tree.find_all(exp.Alias)):
        if not alias.alias.startswith(UNITS_PREFIX):
            continue
        count = alias.this
        if not isinstance(count, exp.Count):
            continue  # a reference to the count, e.g. an outer SELECT passing it on
        if isinstance(count.this, exp.Star):
            indexed[alias.alias] = _list_rows(alias, rows_are_units, bitstrings)
            found += 1
            continue
        if not isinstance(count.this, exp.Distinct):
            raise ValueError(f"{alias.alias} does not count units distinctly")
        unit = count.this.expressions[0]
        listed = exp.Anonymous(this="list", expressions=[exp.Distinct(expressions=[unit.copy()])])
        alias.set("this", exp.Filter(this=listed, expression=exp.Where(this=exp.Not(this=exp.Is(this=unit.copy(), expression=exp.Null())))))
        found += 1
    if not found:
        raise ValueError("the plan counts no privacy units")
    return PopulationRun(tree.sql(dialect="duckdb"), indexed, frozenset(column for column, name in indexed.items() if name in bitstrings))


def _list_rows(alias: exp.Alias, rows_are_units: Collection[str], bitstrings: Mapping[str, int]) -> str:
    """Make ``COUNT(*) AS "__units_<i>"`` list its rows' ``UNIT_INDEX`` (passed through a derived table); its dataset."""
    select = alias.find_ancestor(exp.Select)
    assert select is not None
    items = [select.args["from_"].this, *(join.this for join in select.args.get("joins") or [])]
    if len(items) != 1:
        raise ValueError(f"{alias.alias} counts rows of a join, not units")
    item = items[0]
    base = item.this.args["from_"].this if isinstance(item, exp.Subquery) else item
    if not isinstance(base, exp.Table) or base.name not in rows_are_units:
        raise ValueError(f"{alias.alias} counts rows, not units distinctly, and the rows are not known to be distinct units")
    position = exp.column(UNIT_INDEX, table=base.alias_or_name, quoted=True)
    if isinstance(item, exp.Subquery):
        item.this.append("expressions", exp.alias_(position, UNIT_INDEX, quoted=True))
        position = exp.column(UNIT_INDEX, table=item.alias_or_name, quoted=True)
    if base.name in bitstrings:
        last = exp.Literal.number(_bits(bitstrings[base.name]) - 1)
        alias.set("this", exp.Anonymous(this="bitstring_agg", expressions=[position, exp.Literal.number(0), last]))
    else:
        alias.set("this", exp.Anonymous(this="list", expressions=[position]))
    return str(base.name)


def with_unit_index(table: pa.Table) -> pa.Table:
    """``table`` with ``UNIT_INDEX``, each row's position (its unit's index where every row is a different unit)."""
    if table.num_rows >= 2**32:
        raise ValueError("a version of 2**32 rows or more cannot be indexed by 32-bit bitmaps")
    return table.append_column(UNIT_INDEX, pa.array(np.arange(table.num_rows, dtype=np.uint32)))


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


def split(raw: pa.Table, dictionaries: Mapping[str, pa.Array | None]) -> tuple[pa.Table, dict[str, list[BitMap]]]:
    """The population run's table with unit counts in place of the lists, and each unit column's populations per row.

    ``dictionaries`` maps each ``__units_<i>`` column to the dictionary of the dataset it counts, or
    to ``None`` where the column lists row positions (``UNIT_INDEX``), which are the indices already,
    as a list or as a bitstring (a binary column, ``PopulationRun.bitstrings``).
    """
    populations: dict[str, list[BitMap]] = {}
    for name, dictionary in dictionaries.items():
        if pa.types.is_binary(raw.schema.field(name).type):
            if dictionary is not None:
                raise ValueError(f"{name} is a bitstring of row positions, which need no dictionary")
            populations[name] = [BitMap() if bits is None else _bitstring_bitmap(bits) for bits in raw.column(name).to_pylist()]
        else:
            populations[name] = _listed(raw.column(name).combine_chunks(), dictionary, name)
        counts = pa.array([len(population) for population in populations[name]], pa.int64())
        raw = raw.set_column(raw.schema.get_field_index(name), name, counts)
    return raw, populations


def _listed(lists: pa.ListArray, dictionary: pa.Array | None, name: str) -> list[BitMap]:
    """Each row's bitmap of a list column: of its positions (``dictionary`` ``None``), or its units' indices in ``dictionary``."""
    values = lists.values if dictionary is None else pc.index_in(lists.values, value_set=dictionary)
    if values.null_count:
        raise ValueError(f"{name} names a unit that is not in its dataset version")
    indices = values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
    offsets, valid = lists.offsets.to_numpy(), lists.is_valid().to_numpy(zero_copy_only=False)
    return [_bitmap(indices[offsets[i] : offsets[i + 1]] if valid[i] else indices[:0]) for i in range(len(lists))]


_REVERSED = np.array([int(f"{byte:08b}"[::-1], 2) for byte in range(256)], dtype=np.uint8)
_SERIAL_COOKIE_NO_RUNCONTAINER = 12346  # the portable format's first word where no container is a run container
_ARRAY_MAX = 4096  # a container of at most this many values is an array of them, else a 65,536-bit bitset


def _bitstring_bitmap(bits: bytes) -> BitMap:
    """The bitmap of the positions set in a DuckDB bitstring of whole containers, built as the portable roaring format.

    DuckDB's BIT value is one byte counting its padding bits (none here: ``_bits`` makes whole
    containers) and then the bits, first position in the first byte's highest bit. Reversing each
    byte's bits puts position ``8k + b`` at bit ``b`` of byte ``k``, so each 8 KiB block read as
    little-endian 64-bit words is exactly a roaring bitset container. The format (RoaringFormatSpec,
    the one ``BitMap.serialize`` writes and ``deserialize`` checks): the cookie and the number of
    containers; each container's key (upper 16 bits) and cardinality - 1; each container's byte
    offset; then the containers, bitsets as they are, the sparse ones as sorted 16-bit arrays.
    """
    if not bits or bits[0] != 0 or (len(bits) - 1) % (CONTAINER_BITS // 8):
        raise ValueError("a population bitstring must cover whole containers")
    words = _REVERSED[np.frombuffer(bits, dtype=np.uint8, offset=1)].view("<u8").reshape(-1, CONTAINER_BITS // 64)
    cardinalities = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    keys = np.flatnonzero(cardinalities)
    bodies = [
        words[key].tobytes()
        if cardinalities[key] > _ARRAY_MAX
        else np.flatnonzero(np.unpackbits(words[key].view(np.uint8), bitorder="little")).astype("<u2").tobytes()
        for key in keys
    ]
    descriptions = np.empty(2 * len(keys), dtype="<u2")
    descriptions[0::2], descriptions[1::2] = keys, cardinalities[keys] - 1
    start = 8 + 8 * len(keys)  # cookie and count, then a description and an offset per container
    offsets = start + np.concatenate(([0], np.cumsum([len(body) for body in bodies], dtype=np.int64)))[:-1]
    header = np.array([_SERIAL_COOKIE_NO_RUNCONTAINER, len(keys)], dtype="<u4").tobytes() + descriptions.tobytes()
    return BitMap.deserialize(header + offsets.astype("<u4").tobytes() + b"".join(bodies))


def _bitmap(indices: np.ndarray) -> BitMap:
    """A bitmap of 32-bit ``indices``, built from their buffer (pyroaring iterates a numpy array value by value)."""
    return BitMap(array.array("I", indices.tobytes()))


def group_populations(index: np.ndarray, units: np.ndarray, groups: int) -> list[BitMap]:
    """Each group's units, from per-row group and unit indices (``units`` < 0: no unit)."""
    valid = units >= 0
    order = np.argsort(index[valid], kind="stable")
    grouped, members = index[valid][order], units[valid][order].astype(np.uint32)
    bounds = np.searchsorted(grouped, np.arange(groups + 1))
    return [_bitmap(members[bounds[g] : bounds[g + 1]]) for g in range(groups)]


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
