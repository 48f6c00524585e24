"""Secondary suppression: withhold complementary cells so that suppressed cells of a table with margins
cannot be recovered, exactly or too closely, from the published cells by subtraction.

A table arrives in long form: cell i has a key over d dimensions, ``None`` where the cell is a margin
("All") in that dimension, and an additive value (a count or a sum; means, minima and the like take
no part). The table's relations are: for every cell whose key is ``None`` in dimension j, its value
equals the sum of the cells whose keys equal it except for a concrete value in position j. Only
cells present take part, so a cell missing from the table counts as zero, as a GROUP BY leaves out
empty groups. A relation whose total is itself suppressed is one more unknown in that relation.

``audit`` is what an intruder can do: given the published cells and the relations (and, for counts,
that no cell is negative), a linear programme (HiGHS) per suppressed cell finds the smallest and the
largest value it can take. ``protect`` chooses complements until every suppressed cell's interval is
at least ``protection_width`` wide:

1. for each primary, interior cells and small values first, suppress the corners of the cheapest
   hypercube through it whose corners can all move by the width (``_hypercube``, the GHMITER idea:
   no programme needed; corners already suppressed cost nothing);
2. audit the suppressed set; while a cell is under-protected, add for each one, narrowest first
   (skipping cells that share a relation with a complement added in this round: the re-audit
   decides), the cheapest published cell sharing a relation with it, or with the nearest suppressed
   cell linked to it: the smallest value that covers the missing width, else the largest below it;
3. try to publish each complement again, costliest first, keeping it published when the audit of
   the cells it was linked to still passes.

Limits: not the minimum-loss solution (a mixed-integer problem, tau-ARGUS' optimal method). The
audit sees only this table's relations, not linked tables, rounding, or an AVG beside its COUNT.
Values are scaled to a largest magnitude of 1 for HiGHS' tolerances (about 1e-7), so a protection
width below about 1e-6 of the largest value is not resolved.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog  # type: ignore[import-untyped]  # scipy ships no type information
from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

from core.errors import InternalError

Key = tuple[Hashable | None, ...]
Interval = tuple[float, float]
TOLERANCE = 1e-7  # on scaled values, where the largest magnitude is 1
PROBES = 2  # random directions optimised per component before solving cell by cell
CUBE_CHOICES = 8  # alternatives tried per dimension when choosing a hypercube of complements


class TableError(ValueError):
    """The table is malformed: keys of different lengths or repeated, values not finite, bad cell indices."""


class InconsistentTable(TableError):
    """The published values contradict the table's relations, so no table fits them."""


@dataclass(frozen=True)
class Relation:  # values[total] == sum(values[p] for p in parts)
    total: int
    parts: tuple[int, ...]


@dataclass(frozen=True)
class Protection:
    suppressed: frozenset[int]  # primaries and complements
    complements: frozenset[int]  # suppressed beyond the primaries
    intervals: dict[int, Interval]  # what an intruder can infer about each suppressed cell
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


def audit(keys: Sequence[Key], values: Sequence[float], suppressed: Iterable[int], nonnegative: bool = True) -> dict[int, Interval]:
    """The smallest and largest value each suppressed cell (by index) can take given everything else.

    ``nonnegative`` adds the bound every count and every sum of non-negative values obeys; an
    intruder knows it. An unbounded side is ``-inf`` or ``inf``. Raises ``InconsistentTable`` when
    the published values cannot satisfy the relations.
    """
    table = _Table.of(keys, values)
    system = _System(table, _indices(suppressed, len(keys)), nonnegative)
    return {cell: table.unscale(system.interval(cell)) for cell in system.order}


def protect(
    keys: Sequence[Key], values: Sequence[float], primary: Iterable[int], protection_width: float, nonnegative: bool = True
) -> Protection:
    """Primaries plus complements such that every suppressed cell's audited interval is at least
    ``protection_width`` wide (the algorithm is in the module docstring).

    The caller passes every primary, margins that fail a rule included. Primaries are always in the
    result; values are never changed.
    """
    if not math.isfinite(protection_width) or protection_width < 0:
        raise TableError("the protection width must be a finite number >= 0")
    table = _Table.of(keys, values)
    primaries = _indices(primary, len(keys))
    need = protection_width / table.scale
    chosen = set(primaries)
    for cell in sorted(primaries, key=lambda c: (table.depth(c), float(table.values[c]), c)):
        chosen |= _hypercube(table, chosen, cell, need, nonnegative)
    while True:
        system = _System(table, frozenset(chosen), nonnegative)
        weak = sorted((c for c in system.order if not system.wide_enough(c, need)), key=lambda c: _width(system.interval(c)))
        if not weak:
            break
        added = _complements(table, system, weak, need)
        if not added:
            raise TableError("a suppressed cell cannot be protected: every cell linked to it is suppressed already")
        chosen |= added
    chosen = _prune(table, chosen, primaries, nonnegative, need)
    system = _System(table, frozenset(chosen), nonnegative)
    complements = frozenset(chosen - primaries)
    intervals = {cell: table.unscale(system.interval(cell)) for cell in system.order}
    return Protection(frozenset(chosen), complements, intervals, table.loss(complements))


@dataclass(frozen=True)
class _Table:
    keys: tuple[Key, ...]
    values: np.ndarray  # scaled: divided by ``scale``
    scale: float  # the largest magnitude, or 1
    relations: tuple[Relation, ...]
    member_of: tuple[tuple[int, ...], ...]  # per cell, the relations it takes part in
    index: dict[Key, int]
    domains: tuple[tuple[Hashable, ...], ...]  # per dimension, its concrete values

    @classmethod
    def of(cls, keys: Sequence[Key], values: Sequence[float]) -> _Table:
        found = relations(keys)
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
        index = {key: i for i, key in enumerate(keys)}
        return cls(tuple(keys), raw / scale, scale, tuple(found), tuple(tuple(m) for m in member), index, domains)

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


class _System:
    """The relations as equalities over the suppressed cells, split into connected components.

    Every optimum found is a feasible table, so each solved programme also widens what is known of
    every other cell's interval: ``wide_enough`` answers from those points when it can and solves
    only when it must, which saves most programmes in ``protect``.
    """

    def __init__(self, table: _Table, suppressed: frozenset[int], nonnegative: bool) -> None:
        self.order = sorted(suppressed)
        self.position = {cell: p for p, cell in enumerate(self.order)}
        self.bounds = (0.0, None) if nonnegative else (None, None)
        rows, rhs = [], []
        for r in range(len(table.relations)):
            row, constant = np.zeros(len(self.order)), 0.0
            for cell, coefficient in zip(table.members(r), (-1.0, *([1.0] * len(table.relations[r].parts))), strict=True):
                if cell in self.position:
                    row[self.position[cell]] += coefficient
                else:
                    constant += coefficient * table.values[cell]
            if np.any(row):
                rows.append(row)
                rhs.append(-constant)
            elif abs(constant) > TOLERANCE:
                raise InconsistentTable("the published cells contradict the table's margins")
        self.a = np.array(rows).reshape(len(rows), len(self.order))
        self.b = np.array(rhs)
        self.component = _components(self.a, len(self.order))
        self.seen_low = np.full(len(self.order), math.inf)
        self.seen_high = np.full(len(self.order), -math.inf)
        self._exact: dict[int, Interval] = {}
        self._probed: set[tuple[int, int]] = set()

    def linked(self, cell: int) -> list[int]:
        """The suppressed cells in the same component as ``cell`` (itself included)."""
        label = self.component[self.position[cell]]
        return [c for p, c in enumerate(self.order) if self.component[p] == label]

    def interval(self, cell: int) -> Interval:
        if cell not in self._exact:
            self._exact[cell] = self._solve(self.position[cell])
        return self._exact[cell]

    def wide_enough(self, cell: int, need: float) -> bool:
        p = self.position[cell]
        if self.seen_high[p] - self.seen_low[p] < need - TOLERANCE:
            self._probe(p)
        return self.seen_high[p] - self.seen_low[p] >= need - TOLERANCE or _width(self.interval(cell)) >= need - TOLERANCE

    def _equalities(self, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The equalities and columns of p's component, ``None`` when it has none."""
        columns = np.flatnonzero(self.component == self.component[p])
        rows = np.flatnonzero(np.any(self.a[:, columns] != 0, axis=1))
        return (self.a[np.ix_(rows, columns)], self.b[rows], columns) if len(rows) else None

    def _probe(self, p: int, directions: int = PROBES) -> None:
        """Once per component, optimise both ways along fixed pseudo-random directions, which collects
        spread-out tables; with none, one programme only proves the component feasible, so that the
        shortcut in ``_solve`` cannot hide a contradiction."""
        found, label = self._equalities(p), (int(self.component[p]), directions)
        if found is None or label in self._probed:
            return
        self._probed.add(label)
        a, b, columns = found
        for direction in np.random.default_rng(len(columns)).uniform(-1, 1, (directions, len(columns))):
            self._optimum(direction, a, b, columns)
            self._optimum(-direction, a, b, columns)
        if not directions:
            self._optimum(np.zeros(len(columns)), a, b, columns)

    def _solve(self, p: int) -> Interval:
        found = self._equalities(p)
        if found is None:
            return (-math.inf if self.bounds[0] is None else 0.0, math.inf)
        a, b, columns = found
        target = int(np.flatnonzero(columns == p)[0])
        alone = np.flatnonzero((np.count_nonzero(a, axis=1) == 1) & (a[:, target] != 0))
        if len(alone):  # a relation in which this is the only unknown: subtraction gives it away
            self._probe(p, directions=0)
            value = float(b[alone[0]] / a[alone[0], target])
            return (value, value)
        objective = np.zeros(len(columns))
        objective[target] = 1.0
        low = self._optimum(objective, a, b, columns)
        return (low, -self._optimum(-objective, a, b, columns))

    def _optimum(self, objective: np.ndarray, a: np.ndarray, b: np.ndarray, columns: np.ndarray) -> float:
        result = linprog(objective, A_eq=a, b_eq=b, bounds=self.bounds, method="highs")
        if result.status == 0:
            self.seen_low[columns] = np.minimum(self.seen_low[columns], result.x)
            self.seen_high[columns] = np.maximum(self.seen_high[columns], result.x)
            return float(result.fun)
        if result.status == 3:
            return -math.inf
        if result.status == 2:
            raise InconsistentTable("the published cells contradict the table's margins")
        raise InternalError(f"the suppression audit did not finish: {result.message}")


def _components(a: np.ndarray, n: int) -> np.ndarray:
    """A label per variable; variables sharing an equality share a label."""
    linked = (np.abs(a).T @ np.abs(a)) > 0 if len(a) else np.eye(n, dtype=bool)
    return np.asarray(connected_components(csr_matrix(linked), directed=False)[1], dtype=int)


def _width(interval: Interval) -> float:
    return interval[1] - interval[0]


def _complements(table: _Table, system: _System, weak: list[int], need: float) -> set[int]:
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
    """The corners of the cheapest hypercube through ``cell`` that moves it by at least ``need``.

    In every dimension the cube pairs the cell's coordinate with an alternative: another category
    (the two move in opposite directions) or, between a margin and a category, the two move
    together. Moving all 2**d corners by +t or -t keeps every relation, so each corner's interval is
    at least ``min(+ corners) + min(- corners)`` wide (unbounded without the non-negative bound).
    Cost is the value newly suppressed. Without a wide enough cube, none is added and the audit
    loop takes over. At most ``CUBE_CHOICES`` alternatives per dimension are tried.
    """
    key = table.keys[cell]
    if not key:
        return set()
    options = [_alternatives(table, cell, j) for j in range(len(key))]
    best: tuple[tuple[float, int], set[int]] | None = None
    for alternative in itertools.product(*options):
        corners: dict[int, int] = {}
        for picks in itertools.product((False, True), repeat=len(key)):
            corner = table.index.get(tuple(a if pick else k for k, a, pick in zip(key, alternative, picks, strict=True)))
            if corner is None:
                break
            flips = sum(1 for k, a, pick in zip(key, alternative, picks, strict=True) if pick and k is not None and a is not None)
            corners[corner] = -1 if flips % 2 else 1
        else:
            up = min(table.values[c] for c, sign in corners.items() if sign > 0)
            down = min((table.values[c] for c, sign in corners.items() if sign < 0), default=math.inf)
            if not nonnegative or up + down >= need - TOLERANCE:
                cost = (float(sum(table.values[c] for c in corners if c not in suppressed)), sum(table.depth(c) for c in corners))
                if best is None or cost < best[0]:
                    best = (cost, set(corners))
    return best[1] if best else set()


def _alternatives(table: _Table, cell: int, j: int) -> list[Hashable | None]:
    """Coordinates the cube may pair with the cell's in dimension j, cheapest neighbouring cell first."""
    key = table.keys[cell]
    found: list[Hashable | None] = [a for a in table.domains[j] if a != key[j]] + ([None] if key[j] is not None else [])
    neighbour = {a: table.index[k] for a in found if (k := (*key[:j], a, *key[j + 1 :])) in table.index}
    return sorted(neighbour, key=lambda a: float(table.values[neighbour[a]]))[:CUBE_CHOICES]


def _cost(table: _Table, cell: int, gap: float) -> tuple[int, float, int, int]:
    """Smallest value that covers the gap, else the largest that does not; interior cells before margins."""
    value = abs(float(table.values[cell]))
    return (0, value, table.depth(cell), cell) if value >= gap else (1, -value, table.depth(cell), cell)


def _prune(table: _Table, chosen: set[int], primaries: frozenset[int], nonnegative: bool, need: float) -> set[int]:
    """Publish again every complement the audit does not need, costliest first.

    Publishing a cell changes only the component it was in, so only those cells are re-audited,
    the ones sharing a relation with it first; a relation left with a single suppressed cell fails
    at once, without a programme.
    """
    for cell in sorted(chosen - primaries, key=lambda c: (-abs(float(table.values[c])), c)):
        trial = chosen - {cell}
        if need > TOLERANCE and any(sum(1 for m in table.members(r) if m in trial) == 1 for r in table.member_of[cell]):
            continue
        neighbours = {m for r in table.member_of[cell] for m in table.members(r)}
        before = sorted(_System(table, frozenset(chosen), nonnegative).linked(cell), key=lambda c: (c not in neighbours, c))
        system = _System(table, frozenset(trial), nonnegative)
        if all(system.wide_enough(c, need) for c in before if c != cell):
            chosen = trial
    return chosen


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
