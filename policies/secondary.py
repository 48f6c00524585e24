"""Secondary suppression: withhold complementary cells so that suppressed cells of a table with margins
cannot be recovered, exactly or too closely, from the published cells by subtraction.

A table arrives in long form: cell i has a key over d dimensions, ``None`` where the cell is a margin
("All") in that dimension, and an additive value (a count or a sum; means, minima and the like take
no part). The table's relations are: for every cell whose key is ``None`` in dimension j, its value
equals the sum of the cells whose keys equal it except for a concrete value in position j. Only
cells present take part, so a cell missing from the table counts as zero, as a GROUP BY leaves out
empty groups. A relation whose total is itself suppressed is one more unknown in that relation.

``audit`` is what an intruder can do: given the published cells and the relations (and, for counts,
that no cell is negative), linear programmes (HiGHS, ``policies.lp_audit``) find the smallest and the
largest value each suppressed cell can take. ``protect`` chooses complements until every suppressed
cell's interval is at least ``protection_width`` wide. **Guarantee**: when ``protect`` returns, for
every cell of ``Protection.suppressed`` (primaries and complements) there are two tables that agree
with every published cell, obey every relation (and the non-negative bound when given) and differ in
that cell by at least ``protection_width`` (up to HiGHS' tolerance, below). Each cell is proved so
either by a hypercube of suppressed cells through it whose moves span that width (``_certified``: no
programme needed) or by feasible tables the programmes found. Past ``Limits`` it raises
``TooExpensive`` instead of returning; it never returns a weaker pattern.

1. for each primary, interior cells and small values first, suppress the corners of the cheapest
   hypercube through it whose corners can all move by the width (``_hypercube``, the GHMITER idea:
   no programme needed; corners already suppressed cost nothing);
2. audit the suppressed set (after the first round, only the cells still weak and the new
   complements: suppressing more never narrows an interval); while a cell is under-protected, add for each one, narrowest first
   (skipping cells that share a relation with a complement added in this round: the re-audit
   decides), the cheapest published cell sharing a relation with it, or with the nearest suppressed
   cell linked to it: the smallest value that covers the missing width, else the largest below it;
3. try to publish each complement again, costliest first, keeping it published when the audit of
   the cells it was linked to still passes (bounded by ``PRUNE_PROGRAMMES``, so it may keep more
   complements than needed on large tables; the bound depends on the table only, so the same table
   always gets the same pattern: a re-run must not reveal a different set of cells).

Limits: not the minimum-loss solution (a mixed-integer problem, tau-ARGUS' optimal method). The
audit sees only this table's relations, not linked tables, rounding, or an AVG beside its COUNT.
Values are scaled to a largest magnitude of 1 for HiGHS' tolerances (about 1e-7), so a protection
width below about 1e-6 of the largest value is not resolved.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csc_matrix  # type: ignore[import-untyped]  # scipy ships no type information

from policies.cubes import Grid
from policies.lp_audit import TOLERANCE, Audit, Clock, InconsistentTable, Interval, Limits, TableError, _width

__all__ = ["InconsistentTable", "Key", "Limits", "Protection", "Relation", "TableError", "audit", "protect", "relations"]

Key = tuple[Hashable | None, ...]
# A complement is published again only if at most this many cells of its component then need a
# programme (the others keep a cube of suppressed cells): a bound on the work that depends on the
# table alone, never on timing, so that the same table always gets the same suppression pattern.
PRUNE_PROGRAMMES = 16
MASKS_KEPT = 4


@dataclass(frozen=True)
class Relation:  # values[total] == sum(values[p] for p in parts)
    total: int
    parts: tuple[int, ...]


@dataclass(frozen=True)
class Protection:
    suppressed: frozenset[int]  # primaries and complements; ``audit`` gives each one's exact interval
    complements: frozenset[int]  # suppressed beyond the primaries
    information_loss: dict[str, float]  # complements' cells, value, value / grand total (margins count: may pass 1)


def relations(keys: Sequence[Key]) -> list[Relation]:
    """The additive relations of a table with margins (see the module docstring)."""
    width = _check_keys(keys)
    groups: list[dict[Key, list[int]]] = [{} for _ in range(width)]
    for i, key in enumerate(keys):
        for j in range(width):
            if key[j] is not None:
                groups[j].setdefault(key[:j] + key[j + 1 :], []).append(i)
    found = []
    for i, key in enumerate(keys):
        for j in range(width):
            parts = groups[j].get(key[:j] + key[j + 1 :]) if key[j] is None else None
            if parts:
                found.append(Relation(i, tuple(parts)))
    return found


def audit(
    keys: Sequence[Key], values: Sequence[float], suppressed: Iterable[int], nonnegative: bool = True, limits: Limits | None = None
) -> dict[int, Interval]:
    """The smallest and largest value each suppressed cell (by index) can take given everything else.

    ``nonnegative`` adds the bound every count and every sum of non-negative values obeys; an
    intruder knows it. An unbounded side is ``-inf`` or ``inf``. Raises ``InconsistentTable`` when
    the published values cannot satisfy the relations, ``TooExpensive`` past ``limits``.
    """
    table = _Table.of(keys, values, limits or Limits())
    system = table.audit(_indices(suppressed, len(keys)), nonnegative)
    return {cell: table.unscale(system.interval(cell)) for cell in system.order}


def protect(
    keys: Sequence[Key],
    values: Sequence[float],
    primary: Iterable[int],
    protection_width: float,
    nonnegative: bool = True,
    limits: Limits | None = None,
) -> Protection:
    """Primaries plus complements such that every suppressed cell's audited interval is at least
    ``protection_width`` wide (the algorithm is in the module docstring).

    The caller passes every primary, margins that fail a rule included. Primaries are always in the
    result; values are never changed.
    """
    if not math.isfinite(protection_width) or protection_width < 0:
        raise TableError("the protection width must be a finite number >= 0")
    table = _Table.of(keys, values, limits or Limits())
    primaries = _indices(primary, len(keys))
    need = protection_width / table.scale
    chosen = set(primaries)
    for cell in sorted(primaries, key=lambda c: (table.depth(c), float(table.values[c]), c)):
        chosen |= _hypercube(table, chosen, cell, need, nonnegative)
    proofs: Proofs = {}
    chosen = _cover(table, chosen, need, nonnegative, proofs)
    chosen = _prune(table, chosen, primaries, nonnegative, need, proofs)
    complements = frozenset(chosen - primaries)
    return Protection(frozenset(chosen), complements, table.loss(complements))


def _cover(table: _Table, chosen: set[int], need: float, nonnegative: bool, proofs: Proofs) -> set[int]:
    """Add complements until every suppressed cell is protected (step 2 of the module docstring).

    Suppressing more cells only widens intervals (every table that fitted before still fits, with
    the new cells at their true values), so after the first round only the cells found weak and the
    complements just added are checked again.
    """
    pending = set(chosen)
    while True:
        system = table.audit(frozenset(chosen), nonnegative)
        weak = [c for c in sorted(pending) if not _protected(table, system, c, need, nonnegative, proofs)]
        if not weak:
            return chosen
        weak.sort(key=lambda c: _width(system.interval(c)))
        added = _complements(table, system, weak, need)
        if not added:
            raise TableError("a suppressed cell cannot be protected: every cell linked to it is suppressed already")
        chosen |= added
        pending = set(weak) | added


@dataclass(frozen=True)
class _Table:
    keys: tuple[Key, ...]
    values: np.ndarray  # scaled: divided by ``scale``
    scale: float  # the largest magnitude, or 1
    relations: tuple[Relation, ...]
    member_of: tuple[tuple[int, ...], ...]  # per cell, the relations it takes part in
    matrix: csc_matrix  # a row per relation over all cells, by column: -1 for its total, +1 for each part
    clock: Clock  # the limits and deadline of every programme solved for this table
    grid: Grid  # the cells by coordinates, for the hypercubes through them
    masks: dict[frozenset[int], np.ndarray] = field(default_factory=dict, compare=False)  # the last suppressed sets as masks

    @classmethod
    def of(cls, keys: Sequence[Key], values: Sequence[float], limits: Limits) -> _Table:
        """Checked against ``limits`` before anything is built: cells first, then the relations (linear to find)."""
        limits.check_size(len(keys), 0)
        found = relations(keys)
        limits.check_size(len(keys), len(found))
        raw = np.asarray(values, dtype=float)
        if raw.shape != (len(keys),) or not np.all(np.isfinite(raw)):
            raise TableError("one finite value per key is needed")
        scale = float(np.max(np.abs(raw))) if len(raw) and np.any(raw) else 1.0
        member: list[list[int]] = [[] for _ in keys]
        for r, relation in enumerate(found):
            for cell in (relation.total, *relation.parts):
                member[cell].append(r)
        width = len(keys[0]) if keys else 0
        domains = tuple(tuple(dict.fromkeys(key[j] for key in keys if key[j] is not None)) for j in range(width))
        matrix = _relation_matrix(found, len(keys))
        scaled = raw / scale
        grid = Grid.of(keys, domains, scaled)
        return cls(tuple(keys), scaled, scale, tuple(found), tuple(tuple(m) for m in member), matrix, Clock(limits), grid)

    def mask(self, cells: frozenset[int]) -> np.ndarray:
        """``cells`` as a boolean mask over the table; the few latest are kept, as one set is asked about many times."""
        found = self.masks.get(cells)
        if found is None:
            if len(self.masks) >= MASKS_KEPT:
                del self.masks[next(iter(self.masks))]
            found = np.zeros(len(self.keys), dtype=bool)
            found[list(cells)] = True
            found.flags.writeable = False
            self.masks[cells] = found
        return found

    def audit(self, suppressed: frozenset[int], nonnegative: bool) -> Audit:
        """The intruder's programmes over this suppressed set (solved lazily, under the table's clock)."""
        return Audit(self.matrix, self.values, suppressed, nonnegative, self.clock)

    def depth(self, cell: int) -> int:
        """How many dimensions the cell is a margin in: 0 for an interior cell."""
        return sum(1 for k in self.keys[cell] if k is None)

    def members(self, r: int) -> tuple[int, ...]:
        return (self.relations[r].total, *self.relations[r].parts)

    def unscale(self, interval: Interval) -> Interval:
        return (interval[0] * self.scale, interval[1] * self.scale)

    def loss(self, complements: frozenset[int]) -> dict[str, float]:
        """Cells and value suppressed beyond the primaries, and that value's share of the table total
        (the grand total when the table has one, else the sum of its interior cells)."""
        raw = self.values * self.scale
        grand = [i for i, key in enumerate(self.keys) if all(k is None for k in key)]
        total = float(raw[grand[0]]) if grand else float(sum(raw[i] for i, key in enumerate(self.keys) if None not in key))
        value = float(sum(raw[i] for i in complements))
        return {"cells": float(len(complements)), "value": value, "share": value / total if total else 0.0}


def _relation_matrix(found: Sequence[Relation], cells: int) -> csc_matrix:
    rows = [r for r, relation in enumerate(found) for _ in range(1 + len(relation.parts))]
    columns = [cell for relation in found for cell in (relation.total, *relation.parts)]
    coefficients = [c for relation in found for c in (-1.0, *([1.0] * len(relation.parts)))]
    return csc_matrix((coefficients, (rows, columns)), shape=(len(found), cells))


def _complements(table: _Table, system: Audit, weak: list[int], need: float) -> set[int]:
    """One complement per under-protected cell, except where this round already touched its relations."""
    suppressed = set(system.order)
    added: set[int] = set()
    touched: set[int] = set()
    for cell in weak:
        if touched & set(table.member_of[cell]):
            continue
        candidates = _candidates(table, suppressed | added, cell)
        if not candidates:
            continue
        gap = need - _width(system.interval(cell))
        best = min(candidates, key=lambda c: _cost(table, c, gap))
        added.add(best)
        touched |= set(table.member_of[best])
    return added


def _candidates(table: _Table, suppressed: set[int], cell: int) -> set[int]:
    """Published cells sharing a relation with ``cell``, else with the nearest suppressed cells linked to it."""
    frontier, seen = {cell}, {cell}
    while frontier:
        linked = {other for current in frontier for r in table.member_of[current] for other in table.members(r)}
        if linked - suppressed:
            return linked - suppressed
        frontier, seen = linked - seen, seen | linked
    return set()


def _hypercube(table: _Table, suppressed: set[int], cell: int, need: float, nonnegative: bool) -> set[int]:
    """The corners of the cheapest hypercube through ``cell`` that moves it by at least ``need``
    (``policies.cubes``): each corner's interval is then at least the cube's room wide. Cost is the
    value newly suppressed, then the corners' margin depth. Without a wide enough cube, none is added
    and the audit loop takes over. At most ``policies.cubes.CUBE_CHOICES`` alternatives per dimension are tried.
    """
    return set(table.grid.cheapest(cell, table.mask(frozenset(suppressed)), need - TOLERANCE if nonnegative else -math.inf))


Proofs = dict[int, frozenset[int]]  # per cell, the corners of a cube that proved it protected


def _certified(table: _Table, suppressed: frozenset[int], cell: int, need: float, nonnegative: bool, proofs: Proofs) -> bool:
    """Whether a hypercube of suppressed cells through ``cell`` already moves it by ``need``: a proof without a programme.

    The cube's moves are feasible tables, so its room is a lower bound on the width the audit would
    find; a cell it does not certify is left to the programmes. A cube found once stays a proof for
    as long as all its corners are suppressed (``proofs`` keeps it), which spares the search when
    pruning publishes a cell elsewhere.
    """
    known = proofs.get(cell)
    if known is not None and known <= suppressed:
        return True
    found = table.grid.certificate(cell, table.mask(suppressed), need - TOLERANCE if nonnegative else -math.inf)
    if found is not None:
        proofs[cell] = found
    return found is not None


def _protected(table: _Table, system: Audit, cell: int, need: float, nonnegative: bool, proofs: Proofs) -> bool:
    """A cube proves it, or the programmes do."""
    return _certified(table, system.suppressed, cell, need, nonnegative, proofs) or system.wide_enough(cell, need)


def _cost(table: _Table, cell: int, gap: float) -> tuple[int, float, int, int]:
    """Smallest value that covers the gap, else the largest that does not; interior cells before margins."""
    value = abs(float(table.values[cell]))
    return (0, value, table.depth(cell), cell) if value >= gap else (1, -value, table.depth(cell), cell)


def _prune(table: _Table, chosen: set[int], primaries: frozenset[int], nonnegative: bool, need: float, proofs: Proofs) -> set[int]:
    """Publish again every complement the audit does not need, costliest first.

    Publishing a cell changes only the component it was in, so only those cells are re-audited,
    the ones sharing a relation with it first; a relation left with a single suppressed cell fails
    at once, without a programme, and a cell still inside a cube of suppressed cells needs none.
    A trial that would leave more than ``PRUNE_PROGRAMMES`` cells to the programmes keeps the
    complement: more cells withheld than needed, never fewer.
    """
    hopeless: set[int] = set()  # no cube of the current set proves them: none of a smaller set will
    current: Audit | None = None  # the audit of ``chosen``, once needed: an accepted trial's audit becomes it
    for cell in sorted(chosen - primaries, key=lambda c: (-abs(float(table.values[c])), c)):
        trial = chosen - {cell}
        if need > TOLERANCE and any(sum(1 for m in table.members(r) if m in trial) == 1 for r in table.member_of[cell]):
            continue
        neighbours = {m for r in table.member_of[cell] for m in table.members(r)}
        current = current or table.audit(frozenset(chosen), nonnegative)
        linked = current.linked(cell)  # ascending: the neighbours first, each part in order
        before = [c for c in linked if c in neighbours] + [c for c in linked if c not in neighbours]
        system = table.audit(frozenset(trial), nonnegative)
        others = [c for c in before if c != cell]
        unproven = _unproven(table, current.suppressed, system.suppressed, others, (need, nonnegative), proofs, hopeless)
        if unproven is not None and all(system.wide_enough(c, need) for c in unproven):
            chosen, current = trial, system
    return chosen


def _unproven(
    table: _Table,
    current: frozenset[int],
    trial: frozenset[int],
    cells: list[int],
    bound: tuple[float, bool],
    proofs: Proofs,
    hopeless: set[int],
) -> list[int] | None:
    """The cells no cube proves once ``trial`` is the suppressed set, or None past ``PRUNE_PROGRAMMES`` of them."""
    need, nonnegative = bound
    found: list[int] = []
    for c in cells:
        if c not in hopeless and not _certified(table, current, c, need, nonnegative, proofs):
            hopeless.add(c)
        if c in hopeless or not _certified(table, trial, c, need, nonnegative, proofs):
            found.append(c)
            if len(found) > PRUNE_PROGRAMMES:
                return None
    return found


def _check_keys(keys: Sequence[Key]) -> int:
    widths = {len(key) for key in keys}
    if len(widths) > 1 or len(set(keys)) != len(keys):
        raise TableError("every key needs the same number of dimensions, and no key may appear twice")
    return widths.pop() if widths else 0


def _indices(cells: Iterable[int], n: int) -> frozenset[int]:
    found = list(cells)
    if any(isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < n for c in found):
        raise TableError(f"cells are given by their index, 0 <= index < {n}")
    return frozenset(int(c) for c in found)
