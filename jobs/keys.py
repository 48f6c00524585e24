"""Keys are outputs: a withheld row shows only a key combination the analyst could know anyway.

A grouped result has one row per key combination that occurs in the data. Shown with its cells
withheld, such a row still says that the combination occurs (race 5 x sex 1 has someone). So:

1. ``complete`` (before output control) lays out every combination of the keys' *declared* values
   (a column's declared domain, or the bins of a declared range), per grouping set, and adds each
   missing one as an empty row: output control withholds it like any other cell under k units,
   and secondary suppression protects it like any other withheld cell. A withheld row and an
   empty one look alike. The rows are then sorted by a data-independent order.
2. ``hide`` (after the release decision) drops each fully withheld row whose *undeclared* key
   values (a key without declared values, or a value outside the declared ones such as NULL) are
   not shown by a released row of the same grouping set: keys come from declared domains or from
   released rows, never from a withheld row alone.

A layout larger than ``MAX_LAYOUT_ROWS`` is not made; every key then counts as undeclared, and
``hide`` drops every fully withheld row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from policies.evidence import GROUPING_COLUMN, UNITS_PREFIX, Output
from policies.model import Aggregate
from policies.output_control import TABLE_ROW, WITHHELD, Note

MAX_LAYOUT_ROWS = 20_000  # rows of a completed table: beyond it, withheld rows are dropped instead of laid out
COUNTS = frozenset({Aggregate.COUNT, Aggregate.COUNT_DISTINCT})  # an empty cell counts 0; other aggregates are NULL


@dataclass(frozen=True)
class Ordering:
    """One sort key of the released rows: a key column, descending or not, NULLs first or not."""

    column: str
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True)
class KeyLayout:
    """The key columns of a grouped result, the declared values of each (``None``: undeclared), and the row order.

    ``order`` is the analyst's ORDER BY over key columns; the rest of the keys follow ascending, so that
    the order never depends on the engine's grouping (a hash table's order is the data's).
    """

    keys: tuple[str, ...]
    domains: tuple[tuple[Any, ...] | None, ...]
    order: tuple[Ordering, ...] = ()

    def undeclared(self) -> KeyLayout:
        return KeyLayout(self.keys, (None,) * len(self.keys), self.order)


_MARGIN = ("margin",)  # a key summed away in this grouping set
_DECLARED = ("declared",)  # a value of the key's declared domain: public


def _masks(table: pa.Table) -> list[int]:
    if GROUPING_COLUMN not in table.column_names:
        return [0] * table.num_rows
    return [int(g or 0) for g in table.column(GROUPING_COLUMN).to_pylist()]


def _free_parts(table: pa.Table, layout: KeyLayout, masks: Sequence[int]) -> list[tuple[int, tuple[Any, ...]]]:
    """Per row its grouping mask and its key values with every declared value replaced by ``_DECLARED``."""
    n = len(layout.keys)
    values = [table.column(k).to_pylist() for k in layout.keys]
    sets = [None if d is None else set(d) for d in layout.domains]
    parts = []
    for i, mask in enumerate(masks):
        part: list[tuple[Any, ...]] = []
        for j in range(n):
            if mask >> (n - 1 - j) & 1:
                part.append(_MARGIN)
            elif sets[j] is not None and values[j][i] in sets[j]:  # type: ignore[operator]
                part.append(_DECLARED)
            else:
                part.append(("value", _same(values[j][i])))
        parts.append((mask, tuple(part)))
    return parts


def typed_domains(table: pa.Table, layout: KeyLayout) -> KeyLayout:
    """The declared values cast to the key columns' types; a domain that does not cast counts as undeclared."""
    domains: list[tuple[Any, ...] | None] = []
    for key, domain in zip(layout.keys, layout.domains, strict=True):
        if domain is None:
            domains.append(None)
            continue
        try:
            cast = pa.array(list(domain)).cast(table.schema.field(key).type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            domains.append(None)
            continue
        domains.append(tuple(dict.fromkeys(v for v in cast.to_pylist() if v is not None)))
    return KeyLayout(layout.keys, tuple(domains), layout.order)


def complete(table: pa.Table, layout: KeyLayout, outputs: Sequence[Output]) -> tuple[pa.Table, KeyLayout]:
    """Every combination of declared values, per grouping set, as a row (missing ones empty), in a fixed order.

    Returns the table and the layout ``hide`` must use: the same, or all keys undeclared when the
    layout would be larger than ``MAX_LAYOUT_ROWS`` or no key column can hold its declared values.
    """
    layout = typed_domains(table, layout)
    parts = _free_parts(table, layout, _masks(table))
    wanted: list[tuple[int, tuple[Any, ...]]] = []
    size = 0
    for mask, part in dict.fromkeys(parts):
        choices = [layout.domains[j] if p is _DECLARED else (None if p is _MARGIN else p[1],) for j, p in enumerate(part)]
        size += _product(len(c) for c in choices if c is not None)
        if size > MAX_LAYOUT_ROWS:
            return _sorted(table, layout), layout.undeclared()
        wanted += [(mask, combo) for combo in itertools.product(*choices)]  # type: ignore[arg-type]
    present = {(mask, tuple(map(_same, combo))) for mask, combo in zip(_masks(table), _key_tuples(table, layout.keys), strict=True)}
    missing = [(mask, combo) for mask, combo in wanted if (mask, tuple(map(_same, combo))) not in present]
    if missing:
        table = pa.concat_tables([table, _empty_rows(table, layout.keys, outputs, missing)])
    return _sorted(table, layout), layout


def _same(value: Any) -> Any:
    """A value as compared between rows: every NaN is the same key (DuckDB groups NaNs together)."""
    return _NAN if isinstance(value, float) and math.isnan(value) else value


_NAN = ("nan",)


def _product(sizes: Any) -> int:
    total = 1
    for size in sizes:
        total *= size
    return total


def _key_tuples(table: pa.Table, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    columns = [table.column(k).to_pylist() for k in keys]
    return [tuple(c[i] for c in columns) for i in range(table.num_rows)]


def _empty_rows(table: pa.Table, keys: Sequence[str], outputs: Sequence[Output], rows: Sequence[tuple[int, tuple[Any, ...]]]) -> pa.Table:
    """Rows of no units: counts 0, unit counts 0, every other aggregate and evidence NULL."""
    counts = {o.name for o in outputs if o.aggregate in COUNTS}
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        if name in keys:
            position = keys.index(name)
            columns[name] = [combo[position] for _, combo in rows]
        elif name == GROUPING_COLUMN:
            columns[name] = [mask for mask, _ in rows]
        elif name in counts or name.startswith(UNITS_PREFIX):
            columns[name] = [0] * len(rows)
        else:
            columns[name] = [None] * len(rows)
    return pa.table({name: pa.array(values, table.schema.field(name).type) for name, values in columns.items()}, schema=table.schema)


def _sorted(table: pa.Table, layout: KeyLayout) -> pa.Table:
    """Grouping sets first (inner cells before margins), then the analyst's ORDER BY, then the keys ascending.

    pyarrow's ``sort_indices`` is stable, so sorting by the least significant key first and the most
    significant last gives the lexicographic order with each key's own NULL placement.
    """
    if table.num_rows < 2:
        return table
    named = {o.column for o in layout.order}
    order = [*layout.order, *(Ordering(k) for k in layout.keys if k not in named)]
    if GROUPING_COLUMN in table.column_names:
        order.insert(0, Ordering(GROUPING_COLUMN))
    indices = pa.array(range(table.num_rows), pa.int64())
    for key in reversed(order):
        column = table.column(key.column).take(indices)
        direction = "descending" if key.descending else "ascending"
        step = pc.sort_indices(pa.table({"k": column}), sort_keys=[("k", direction, "at_start" if key.nulls_first else "at_end")])
        indices = indices.take(step)
    return table.take(indices)


def hide(
    table: pa.Table, notes: Sequence[Note], layout: KeyLayout, aggregates: Sequence[str], masks: Sequence[int] | None = None
) -> tuple[pa.Table, tuple[Note, ...]]:
    """Drop each fully withheld row whose undeclared key values no released row of its grouping set shows.

    Notes follow their rows (renumbered); notes on dropped rows go with them. ``table`` is the
    released table of ``complete``'s rows, in the same order; ``masks`` their grouping sets (the
    released table has lost ``__grouping`` with the other evidence; ``None``: no margins).
    """
    withheld: dict[int, int] = {}
    for note in notes:
        if note.status in WITHHELD and note.row != TABLE_ROW:
            withheld[note.row] = withheld.get(note.row, 0) + 1
    empty = {i for i in range(table.num_rows) if withheld.get(i, 0) >= len(aggregates)}
    parts = _free_parts(table, layout, [0] * table.num_rows if masks is None else masks)
    known = {parts[i] for i in range(table.num_rows) if i not in empty}
    keep = [i for i in range(table.num_rows) if i not in empty or _public(parts[i][1]) or parts[i] in known]
    if len(keep) == table.num_rows:
        return table, tuple(notes)
    position = {old: new for new, old in enumerate(keep)}
    kept_notes = tuple(
        Note(position[n.row] if n.row != TABLE_ROW else TABLE_ROW, n.column, n.status, n.rule, n.reason, n.evidence)
        for n in notes
        if n.row == TABLE_ROW or n.row in position
    )
    return table.take(pa.array(keep, pa.int64())), kept_notes


def _public(part: tuple[Any, ...]) -> bool:
    return all(p is _DECLARED or p is _MARGIN for p in part)
