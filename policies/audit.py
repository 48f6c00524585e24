"""The release audit: may these new cells join everything already released from a dataset version?

Every released cell is a set of privacy units (its *population*, a roaring bitmap of the units'
indices in the dataset version, ``jobs.population``), whatever its keys were (hidden, NaN, expressions) and whatever kind released it.
An attacker who knows the values ``s_i = sum(x_u for u in P_i)`` of released cells knows every
linear combination ``sum(l_i s_i) = sum(w_u x_u)`` with ``w = sum(l_i 1[P_i])``. The rule: **no
nonzero vector ``w`` in the span of the released indicator vectors may be supported on fewer than
k units** -- so no unit's value is pinned, and no combination (a difference of two cells, a
partition's complement, a + b - c over three releases) isolates fewer than k units.

Three rules, cheapest first, each naming the cell that fails:

``pair``        ``1 <= |P ^ Q| <= k-1`` for a new cell P and an earlier cell Q (sizes prune: the
                symmetric difference is at least the difference of the sizes). Exact.
``union``       the same test between a new cell and the union of each earlier release's cells,
                between each earlier cell and the union of the new release's cells (a total minus
                a partition's cells), and between the two unions. Exact.
``combination`` the linear system. Units with the same membership in every released cell form
                *atoms*; every ``w`` in the span is constant on atoms, so the span lives in atom
                coordinates (a basis of at most one row per atom). Let S be the atoms of fewer than
                k units. A vector supported on fewer than k units can only touch atoms in S, so it
                lies in ``W = span ∩ R^S``, of dimension ``rank(span) - rank(span restricted to the
                other atoms)``. ``dim W = 0``: safe, exactly. ``dim W = 1``: its one direction has
                a fixed support, violating iff that support holds fewer than k units -- exact.
                ``dim W >= 2``: the sparsest vector of a subspace is NP-hard in general, so the
                audit is *conservative* and refuses (it may refuse a release whose smallest
                combination holds k or more units; it never passes one holding fewer).
``too_large``   above ``CAP`` entries (rows of the span's basis plus new cells, times atoms) the
                linear system is not computed and the release is refused: the audit never passes
                what it did not check.

Cells failing ``pair`` or ``union`` are dropped first; the rest are tried together, and if the
combination fails, one at a time in row order, keeping each that leaves the span clean (greedy:
the kept set is clean; another order might keep a different set). Populations are computed by
the job's own run and stored at release (``jobs.population``, ``sandbox.runtime.release_audit``);
this module is pure: bitmaps in, findings and the span after the release out.

What it models: each released number as a linear function of its population's values. Sums and
counts are exactly that; means, quantiles and extremes are not, and are audited as if they were
(their populations are what differencing needs). Noisy (DP) releases are not audited: the budget
is their control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from pyroaring import BitMap

CAP = 1_000_000  # (basis rows + new cells) x atoms: about 1,000 x 1,000, a few seconds of SVD
TOLERANCE = 1e-9
BULK = 64  # populations added at once from which refining all atoms in one numpy pass beats one bitmap at a time
_BULK_ENTRIES = 4_000_000  # rows x atoms of the indicator matrix built at a time in that pass
_RESORT = 16  # a size index takes new items one by one while they are under 1/16 of it, else is re-sorted


class Rule(Enum):
    PAIR = "pair"
    UNION = "union"
    COMBINATION = "combination"
    TOO_LARGE = "too_large"


def _left_null_vectors(matrix: np.ndarray, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` independent vectors ``c`` with ``c @ matrix = 0`` (none: its rows are independent).

    Gram-Schmidt over the rows, tracking each orthonormal row as a combination of the rows: a row left
    with (next to) nothing is a combination that vanishes. Matrix-vector products only: LAPACK's
    decompositions run BLAS thread pools that, on a busy machine, made each small call ~40 ms.
    """
    rows, width = matrix.shape
    found: list[np.ndarray] = []
    ortho, coefficients, kept = np.zeros((rows, width)), np.zeros((rows, rows)), 0
    for i in range(rows):
        residual, combination = matrix[i].copy(), np.zeros(rows)
        combination[i] = 1.0
        for _ in range(2):  # twice: stable to rounding
            projection = ortho[:kept] @ residual
            residual = residual - projection @ ortho[:kept]
            combination = combination - projection @ coefficients[:kept]
        norm = float(np.linalg.norm(residual))
        if norm <= TOLERANCE:
            found.append(combination)
            if len(found) >= limit:
                break
            continue
        ortho[kept], coefficients[kept] = residual / norm, combination / norm
        kept += 1
    return found


@dataclass(frozen=True)
class Finding:
    """Why a new cell (``row`` of its job's output) may not be released: for auditors only."""

    row: int
    rule: Rule
    earlier_job: str | None  # the earlier release it combines with, where one is named
    detail: str


@dataclass(frozen=True)
class Released:
    """An earlier released cell of the version."""

    job_id: str
    population: BitMap


@dataclass
class Span:
    """The atoms of the released cells and an orthonormal basis of their indicator vectors.

    Coordinates are per atom, scaled by the square root of its size (``x_j = w_j sqrt(|atom_j|)`` for
    a vector ``w`` on units that is constant on atoms), so that the inner product is the units' one.
    Splitting an atom then splits its column into two scaled copies without changing any inner
    product: the basis stays orthonormal, and a new cell is added by orthogonalising its one row
    against it (no decomposition of the whole span per release).
    """

    atoms: list[BitMap] = field(default_factory=list)
    basis: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    covered: BitMap = field(default_factory=BitMap)

    def copy(self) -> Span:
        return Span(list(self.atoms), self.basis.copy(), BitMap(self.covered))

    @property
    def sizes(self) -> np.ndarray:
        return np.fromiter((len(a) for a in self.atoms), np.int64, len(self.atoms))

    def entries(self, new_rows: int) -> int:
        return int(self.basis.shape[0] + new_rows) * max(len(self.atoms), 1)

    def add(self, populations: Sequence[BitMap]) -> None:
        """Refine the atoms by ``populations`` and add their indicator vectors to the span."""
        if len(populations) >= BULK:
            self._add_bulk(populations)
            return
        for population in populations:
            self._refine(population)
        roots = np.sqrt(self.sizes.astype(float))
        for population in populations:
            row = np.fromiter((root if population.intersect(atom) else 0.0 for atom, root in zip(self.atoms, roots, strict=True)), float)
            self._orthogonalise(row)

    def _add_bulk(self, populations: Sequence[BitMap]) -> None:
        """``add`` for many populations (a cold start reads thousands): the same atoms and span, refined with numpy.

        Each unit carries the label of its atom; a population relabels its units by their old label,
        which splits every atom it cuts (the atoms are the units' classes of equal membership, whatever
        the order). A new atom's column is its first ancestor's scaled by the square root of its share,
        as repeated splits would leave it. Rows already in the span (most, once it has settled) are found
        by one projection of many rows and skip the one-row Gram-Schmidt. A population given twice (the
        same cell released again) refines nothing and adds nothing the first did not: it is read once.
        """
        populations = list({p.serialize(): p for p in populations}.values())
        members = [np.frombuffer(p.to_array(), np.uint32) for p in populations]
        unit_atom, sizes = self._refine_many(members)
        self.covered |= BitMap.union(*populations)
        roots, step = np.sqrt(sizes.astype(float)), max(1, _BULK_ENTRIES // max(len(sizes), 1))
        for start in range(0, len(members), step):
            chunk = members[start : start + step]
            rows = np.zeros((len(chunk), len(sizes)))
            owner = np.repeat(np.arange(len(chunk)), [len(units) for units in chunk])
            rows[owner, unit_atom[np.concatenate(chunk)]] = 1.0
            rows *= roots
            self._orthogonalise_many(rows)

    def _refine_many(self, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Refine the atoms by every population (arrays of units), rescale the basis: each unit's atom (-1: none), atom sizes."""
        top = max([int(units.max()) + 1 for units in members if len(units)] + [int(self.covered.max()) + 1 if self.covered else 0])
        labels = np.full(top, -1, np.int64)
        for j, atom in enumerate(self.atoms):
            labels[np.frombuffer(atom.to_array(), np.uint32)] = j
        ancestor = list(range(len(self.atoms)))  # label -> the atom it splits off (-1: units no earlier cell covered)
        for units in members:
            if len(units):
                old, fresh = np.unique(labels[units], return_inverse=True)
                labels[units] = len(ancestor) + fresh
                ancestor += [ancestor[label] if label >= 0 else -1 for label in old.tolist()]
        covered = np.flatnonzero(labels >= 0)
        used, atom_of = np.unique(labels[covered], return_inverse=True)
        sizes = np.bincount(atom_of, minlength=len(used))
        parents = np.asarray(ancestor, np.int64)[used]
        basis = np.zeros((self.basis.shape[0], len(used)))
        if basis.shape[0]:
            split, earlier = parents >= 0, self.sizes
            basis[:, split] = self.basis[:, parents[split]] * np.sqrt(sizes[split] / earlier[parents[split]])
        grouped, bounds = covered[np.argsort(atom_of, kind="stable")].astype(np.uint32), np.concatenate([[0], np.cumsum(sizes)])
        self.atoms, self.basis = [BitMap(grouped[bounds[a] : bounds[a + 1]]) for a in range(len(used))], basis
        unit_atom = np.full(top, -1, np.int64)
        unit_atom[covered] = atom_of
        return unit_atom, sizes

    def _orthogonalise_many(self, rows: np.ndarray) -> None:
        """``_orthogonalise`` each row in turn; those already in the span (projected on it twice, at once) are skipped."""
        residual = rows
        for _ in range(2):
            if self.basis.shape[0]:
                residual = residual - (residual @ self.basis.T) @ self.basis
        norms = np.linalg.norm(rows, axis=1)
        outside = np.linalg.norm(residual, axis=1) > TOLERANCE * norms
        for row in rows[outside & (norms > 0)]:
            self._orthogonalise(row)

    def _orthogonalise(self, row: np.ndarray) -> None:
        """Append the part of ``row`` outside the span, normalised (twice Gram-Schmidt: stable to rounding)."""
        norm = float(np.linalg.norm(row))
        if norm == 0.0:
            return
        residual = row
        for _ in range(2):
            if self.basis.shape[0]:
                residual = residual - self.basis.T @ (self.basis @ residual)
        left = float(np.linalg.norm(residual))
        if left > TOLERANCE * norm:
            self.basis = np.vstack([self.basis, residual / left])

    def _refine(self, population: BitMap) -> None:
        split, inside_share = list[int](), list[float]()
        for j in range(len(self.atoms)):
            atom = self.atoms[j]
            inside = atom & population
            if 0 < len(inside) < len(atom):
                self.atoms[j] = inside
                self.atoms.append(atom - inside)
                split.append(j)
                inside_share.append(len(inside) / len(atom))
        fresh = population - self.covered
        if fresh:
            self.atoms.append(fresh)
            self.covered |= fresh
        rows = self.basis.shape[0]
        if not rows:
            self.basis = np.zeros((0, len(self.atoms)))
            return
        share = np.array(inside_share)
        halves = self.basis[:, split] * np.sqrt(1.0 - share)
        self.basis[:, split] = self.basis[:, split] * np.sqrt(share)
        self.basis = np.hstack([self.basis, halves, np.zeros((rows, 1 if fresh else 0))])

    def isolates(self, k: int) -> bool:
        """Whether some nonzero combination is supported on fewer than k units (conservative when dim W >= 2)."""
        sizes = self.sizes
        small = sizes < k
        if not small.any() or not self.basis.size:
            return False
        null = _left_null_vectors(self.basis[:, ~small], limit=2)
        if not null:
            return False  # dim W = 0
        if len(null) >= 2:
            return True  # dim W >= 2: conservative
        direction = null[0] @ self.basis[:, small]
        return bool(int(sizes[small][np.abs(direction) > TOLERANCE].sum()) < k)


@dataclass
class _BySize:
    items: list[Released] = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, items: Sequence[Released]) -> _BySize:
        ordered = sorted(items, key=lambda r: len(r.population))
        return cls(ordered, np.fromiter((len(r.population) for r in ordered), np.int64, len(ordered)))

    def near(self, size: int, k: int) -> list[Released]:
        low, high = np.searchsorted(self.sizes, size - (k - 1)), np.searchsorted(self.sizes, size + (k - 1), side="right")
        return self.items[low:high]

    def insert(self, items: Sequence[Released]) -> None:
        """Add a few items where their sizes belong (a release's cells: no re-sort of thousands)."""
        for item in items:
            at = int(np.searchsorted(self.sizes, len(item.population), side="right"))
            self.items.insert(at, item)
            self.sizes = np.insert(self.sizes, at, len(item.population))


def _by_size() -> _BySize:
    return _BySize()


@dataclass
class History:
    """Everything released on one dataset version: the cells, each release's union, and their span.

    Cells and unions are kept sorted by size: only those within k-1 units of a new population's size
    can differ from it by fewer than k units, so each check compares a handful of bitmaps, not all.
    """

    cells: list[Released] = field(default_factory=list)
    unions: dict[str, BitMap] = field(default_factory=dict)
    span: Span = field(default_factory=Span)
    _cells: _BySize = field(default_factory=_by_size)
    _unions: _BySize = field(default_factory=_by_size)

    def record(self, job_id: str, populations: Sequence[BitMap], span: Span | None = None) -> None:
        """Add a release's cells; ``span`` is the span after them when the audit already computed it."""
        if not populations:
            return
        if span is None:
            span = self.span.copy()
            span.add(populations)
        self._extend([(job_id, populations)])
        self.span = span

    def record_many(self, releases: Sequence[tuple[str, Sequence[BitMap]]]) -> None:
        """Add several releases at once: one refinement pass and one basis computation for all of them."""
        populations = [p for _, cells in releases for p in cells]
        if not populations:
            return
        span = self.span.copy()
        span.add(populations)
        self._extend(releases)
        self.span = span

    def _extend(self, releases: Sequence[tuple[str, Sequence[BitMap]]]) -> None:
        """Add the releases' cells and unions to the size indexes: a few inserted where they belong, many re-sorted."""
        fresh = [Released(job_id, p) for job_id, cells in releases for p in cells]
        touched = list(dict.fromkeys(job_id for job_id, cells in releases if cells))
        known = any(job_id in self.unions for job_id in touched)
        self.cells += fresh
        for job_id, cells in releases:
            if cells:
                union = self.unions.setdefault(job_id, BitMap())
                union |= BitMap.union(*cells)
        if len(fresh) * _RESORT > len(self.cells):
            self._cells = _BySize.of(self.cells)
        else:
            self._cells.insert(fresh)
        if known or len(touched) * _RESORT > len(self.unions):  # a union that grew must move
            self._unions = _BySize.of([Released(j, u) for j, u in self.unions.items()])
        else:
            self._unions.insert([Released(j, self.unions[j]) for j in touched])

    def near(self, size: int, k: int) -> list[Released]:
        """Earlier cells whose size is within k-1 of ``size`` (only they can differ by fewer than k units)."""
        return self._cells.near(size, k)

    def near_unions(self, size: int, k: int) -> list[Released]:
        """Earlier releases' unions whose size is within k-1 of ``size``."""
        return self._unions.near(size, k)


@dataclass(frozen=True)
class Decision:
    kept: tuple[int, ...]  # rows that may be released
    findings: tuple[Finding, ...]
    span: Span | None  # the span with the kept cells added (None when the audit refused to compute it)


def _first_within(population: BitMap, candidates: Sequence[Released], job_id: str, k: int) -> tuple[Released, int] | None:
    """The first candidate of another job that differs from ``population`` by 1..k-1 units, and by how many.

    The candidates come from ``History.near``: within k-1 units of its size, so only the symmetric
    difference is counted (one call into CRoaring per candidate, nothing built).
    """
    difference = population.symmetric_difference_cardinality
    for old in candidates:
        d = difference(old.population)
        if 0 < d < k and old.job_id != job_id:
            return old, d
    return None


def _pairs_and_unions(history: History, job_id: str, cells: dict[int, BitMap], k: int) -> list[Finding]:
    findings: dict[int, Finding] = {}
    for row, population in cells.items():
        if found := _first_within(population, history.near(len(population), k), job_id, k):
            findings[row] = Finding(row, Rule.PAIR, found[0].job_id, f"differs from an earlier cell by {found[1]} units")
        elif found := _first_within(population, history.near_unions(len(population), k), job_id, k):
            detail = f"differs from the union of an earlier release's cells by {found[1]} units"
            findings[row] = Finding(row, Rule.UNION, found[0].job_id, detail)
    rest = [row for row in cells if row not in findings]  # cells already withheld are not part of the union
    mine = BitMap.union(*(cells[row] for row in rest)) if rest else BitMap()
    for candidates, what in (
        (history.near(len(mine), k), "an earlier cell"),
        (history.near_unions(len(mine), k), "the union of an earlier release's cells"),
    ):
        if found := _first_within(mine, candidates, job_id, k):
            for row in rest:  # the new cells together complete an earlier cell: none may go alone
                findings.setdefault(row, Finding(row, Rule.UNION, found[0].job_id, f"their union differs from {what} by {found[1]} units"))
            break
    return list(findings.values())


def audit(history: History, job_id: str, cells: dict[int, BitMap], k: int, cap: int = CAP) -> Decision:
    """Which of a release's ``cells`` (row -> population) may join ``history``, and why the others may not."""
    findings = _pairs_and_unions(history, job_id, cells, k)
    flagged = {f.row for f in findings}
    rest = {row: p for row, p in cells.items() if row not in flagged}
    if not rest:
        return Decision((), tuple(findings), None)
    trial = history.span.copy()
    if trial.entries(len(rest)) > cap:
        return Decision((), (*findings, *(_too_large(row, trial, len(rest)) for row in rest)), None)
    trial.add(list(rest.values()))
    if trial.entries(0) > cap:
        return Decision((), (*findings, *(_too_large(row, trial, 0) for row in rest)), None)
    if not trial.isolates(k):
        return Decision(tuple(rest), tuple(findings), trial)
    span, kept = history.span.copy(), list[int]()
    for row, population in rest.items():
        attempt = span.copy()
        attempt.add([population])
        if attempt.isolates(k):
            findings.append(Finding(row, Rule.COMBINATION, None, "with earlier releases, a combination isolates fewer than k units"))
        else:
            span, kept = attempt, [*kept, row]
    return Decision(tuple(kept), tuple(findings), span)


def _too_large(row: int, span: Span, rows: int) -> Finding:
    return Finding(row, Rule.TOO_LARGE, None, f"audit too large: {span.entries(rows)} entries over the cap of {CAP}")
