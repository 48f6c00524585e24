"""The linear programmes of the suppression audit: what an intruder can infer about each withheld cell.

A table's relations (``policies.secondary``) are one sparse matrix over all its cells. Given a set of
suppressed cells, the published cells become constants and the relations become equalities over the
suppressed ones; the equalities split into connected components, and each component is one HiGHS
model, passed once and then solved again with only its objective changed (HiGHS keeps the basis, so
every further solve is a warm start). As only the objective changes, the last basis stays primal
feasible, and the primal simplex goes on from it (the dual simplex, HiGHS' default, first had to
repair it: three times the iterations on a 79 x 3 x 2 table). The smallest and largest value a cell
can take are two such solves. Every optimum is a feasible table, so it also widens what is known of
every other cell of the component: ``wide_enough`` answers from those points when it can, and else
solves one side and the other only if the first leaves it short.

Cost is bounded before and during the work (``Limits``): the table's size is checked before anything
is built, every solve runs under HiGHS' ``time_limit`` (whose clock counts all of a model's solves,
so the limit is set from the audit's own deadline each time), and ``interrupted()`` is asked between
solves. Exceeding any of them raises ``core.errors.TooExpensive``, never a partial answer.

HiGHS is driven through the solver object scipy ships (``scipy.optimize._highspy._core._Highs``, the
same binding as ``highspy``): ``linprog`` rebuilds and re-validates the whole model on every call,
which cost ten times the solve itself and made a 79 x 3 x 2 table take minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize._highspy import _core as highs  # type: ignore[import-untyped]  # scipy's HiGHS binding, untyped
from scipy.sparse import csc_matrix, csr_matrix  # type: ignore[import-untyped]
from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]

from core.errors import InternalError, TooExpensive

Interval = tuple[float, float]
TOLERANCE = 1e-7  # on scaled values, where the largest magnitude is 1
PRIMAL_SIMPLEX, DUAL_SIMPLEX = 4, 1  # values of HiGHS' simplex_strategy
PROBES = 2  # random directions optimised per component before solving cell by cell

SUPPRESSION_TOO_LONG = "secondary suppression took too long"  # how long depends on the data: the analyst reads any failure


class TableError(ValueError):
    """The table is malformed: keys of different lengths or repeated, values not finite, bad cell indices."""


class InconsistentTable(TableError):
    """The published values contradict the table's relations, so no table fits them."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Limits:
    """What one protection or audit may spend; exceeding any limit raises ``TooExpensive``.

    ``max_cells`` and ``max_relations`` are checked before any work starts (they bound the
    variables and constraints of every programme); ``seconds`` is the wall-clock budget of all
    programmes together; ``interrupted`` is asked between programmes (a cancelled job, a stopping
    worker). The defaults let a 79 x 3 x 2 table with margins finish in a few seconds and refuse
    tables a hundred times larger before they start.
    """

    seconds: float = 60.0
    max_cells: int = 100_000
    max_relations: int = 200_000
    interrupted: Callable[[], bool] = field(default=_never, compare=False)

    def check_size(self, cells: int, relations: int) -> None:
        if cells > self.max_cells or relations > self.max_relations:
            raise TooExpensive(
                "the table is too large for secondary suppression",
                details={"cells": cells, "relations": relations, "max_cells": self.max_cells, "max_relations": self.max_relations},
            )


class Clock:
    """The deadline of one protection: shared by every model it builds."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds

    def remaining(self) -> float:
        """Seconds left; raises ``TooExpensive`` when none are, or when the caller interrupts."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TooExpensive(SUPPRESSION_TOO_LONG, details={"seconds": self.limits.seconds})
        if self.limits.interrupted():
            raise TooExpensive("secondary suppression was interrupted", details={"interrupted": True})
        return left


class _Model:
    """One component's equalities ``a x = b`` (x >= 0 when non-negative) as a HiGHS model, re-solved per objective."""

    def __init__(self, a: csc_matrix, b: np.ndarray, nonnegative: bool, clock: Clock) -> None:
        self.clock = clock
        self.n = a.shape[1]
        self.all = np.arange(self.n, dtype=np.int32)
        self.columns = a  # by column: which equalities each variable is in
        self.solver = highs._Highs()
        self.solver.setOptionValue("output_flag", False)
        self.solver.setOptionValue("presolve", "off")
        self.solver.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)  # only costs change between solves
        lp = highs.HighsLp()
        lp.num_col_, lp.num_row_ = self.n, a.shape[0]
        lp.col_cost_ = np.zeros(self.n)
        lp.col_lower_ = np.zeros(self.n) if nonnegative else np.full(self.n, -highs.kHighsInf)
        lp.col_upper_ = np.full(self.n, highs.kHighsInf)
        lp.row_lower_ = lp.row_upper_ = np.asarray(b, dtype=float)
        matrix = lp.a_matrix_
        matrix.format_ = highs.MatrixFormat.kColwise
        matrix.num_col_, matrix.num_row_ = self.n, a.shape[0]
        matrix.start_, matrix.index_, matrix.value_ = a.indptr, a.indices, a.data
        if self.solver.passModel(lp) != highs.HighsStatus.kOk:
            raise InternalError("the suppression audit could not build its programme")

    def optimum(self, objective: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The minimum of ``objective @ x`` and a minimiser, or ``(-inf, None)`` when unbounded below."""
        self.solver.changeColsCost(self.n, self.all, np.asarray(objective, dtype=float))
        status = self._run()
        if status == highs.HighsModelStatus.kOptimal:
            return float(self.solver.getInfo().objective_function_value), np.asarray(self.solver.getSolution().col_value)
        if status == highs.HighsModelStatus.kUnbounded:
            return -math.inf, None
        if status == highs.HighsModelStatus.kInfeasible:
            raise InconsistentTable("the published cells contradict the table's margins")
        if status in (highs.HighsModelStatus.kTimeLimit, highs.HighsModelStatus.kInterrupt):
            self.clock.remaining()  # raises TooExpensive
        if status == highs.HighsModelStatus.kUnboundedOrInfeasible:
            return self._unbounded_or_infeasible()
        raise InternalError(f"the suppression audit did not finish: {self.solver.modelStatusToString(status)}")

    def _run(self) -> highs.HighsModelStatus:
        """Solve from the last basis; a warm start that ends undecided (``kUnknown``) is solved again cold, by
        the dual simplex (HiGHS' default, the more robust one)."""
        for cold in (False, True):
            if cold:
                self.solver.clearSolver()
                self.solver.setOptionValue("simplex_strategy", DUAL_SIMPLEX)
            self.solver.setOptionValue("time_limit", self.solver.getRunTime() + self.clock.remaining())
            self.solver.run()
            status = self.solver.getModelStatus()
            if status != highs.HighsModelStatus.kUnknown:
                break
        self.solver.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)
        return status

    def _unbounded_or_infeasible(self) -> tuple[float, np.ndarray | None]:
        """Presolve could not tell: a zero objective decides whether any table fits at all."""
        self.solver.changeColsCost(self.n, self.all, np.zeros(self.n))
        if self._run() == highs.HighsModelStatus.kOptimal:
            return -math.inf, None
        raise InconsistentTable("the published cells contradict the table's margins")


class Audit:
    """The relations over one suppressed set, split into components, each solved lazily by its own model.

    ``matrix`` is the table's relations over all cells, by column (a row per relation: -1 for the
    total, +1 per part), ``values`` the scaled cell values. Published cells move to the right-hand
    side; a relation left without a suppressed cell must hold exactly, or the table is inconsistent.
    """

    def __init__(self, matrix: csc_matrix, values: np.ndarray, suppressed: frozenset[int], nonnegative: bool, clock: Clock) -> None:
        self.suppressed = suppressed
        self.order = sorted(suppressed)
        self.position = {cell: p for p, cell in enumerate(self.order)}
        self.nonnegative, self.clock = nonnegative, clock
        columns = np.asarray(self.order, dtype=np.intp)
        published = values.copy()
        published[columns] = 0.0
        constant = matrix @ published if matrix.shape[0] else np.zeros(0)
        a = matrix[:, columns]
        used = np.bincount(a.indices, minlength=a.shape[0]) > 0
        if np.any(np.abs(constant[~used]) > TOLERANCE):
            raise InconsistentTable("the published cells contradict the table's margins")
        self.a, self.b = csr_matrix(a)[used], -constant[used]
        self.component, self.row_component = _components(self.a)
        self.seen_low = np.full(len(self.order), math.inf)
        self.seen_high = np.full(len(self.order), -math.inf)
        self._exact: dict[int, Interval] = {}
        self._low: dict[int, float] = {}
        self._models: dict[int, _Component | None] = {}

    def linked(self, cell: int) -> list[int]:
        """The suppressed cells in the same component as ``cell`` (itself included), in ascending order."""
        label = self.component[self.position[cell]]
        return [self.order[p] for p in np.flatnonzero(self.component == label)]

    def interval(self, cell: int) -> Interval:
        if cell not in self._exact:
            self._exact[cell] = self._solve(self.position[cell])
        return self._exact[cell]

    def wide_enough(self, cell: int, need: float) -> bool:
        """Whether two feasible tables differ in ``cell`` by ``need``: from the tables seen so far when they
        do, else by solving its minimum (whose minimiser joins the tables seen) and, only if still
        short, its maximum."""
        p = self.position[cell]
        if self._seen(p) < need - TOLERANCE:
            self._model(p)  # builds and explores the component: more tables seen
        if self._seen(p) >= need - TOLERANCE:
            return True
        if cell not in self._exact:
            low = self._minimum(p)
            if self.seen_high[p] - low >= need - TOLERANCE:
                return True
        return _width(self.interval(cell)) >= need - TOLERANCE

    def _seen(self, p: int) -> float:
        return float(self.seen_high[p] - self.seen_low[p])

    def _model(self, p: int) -> _Component | None:
        """p's component: its model, columns and equalities; None without equalities (the cell is free)."""
        label = int(self.component[p])
        if label not in self._models:
            rows = np.flatnonzero(self.row_component == label)
            if not len(rows):
                self._models[label] = None
                return None
            columns = np.flatnonzero(self.component == label)
            a = self.a[rows][:, columns]
            found = _Component(_Model(csc_matrix(a), self.b[rows], self.nonnegative, self.clock), columns, a, self.b[rows])
            self._models[label] = found
            self._explore(found, PROBES)
        return self._models[label]

    def _explore(self, found: _Component, directions: int) -> None:
        """Optimise both ways along fixed pseudo-random directions, which collects spread-out tables and, with
        them, proves the component feasible before any shortcut in ``_solve`` could hide a contradiction."""
        for direction in np.random.default_rng(len(found.columns)).uniform(-1, 1, (directions, len(found.columns))):
            self._optimum(found, direction)
            self._optimum(found, -direction)

    def _minimum(self, p: int) -> float:
        """The smallest value p can take (kept for ``_solve``)."""
        if p not in self._low:
            self._low[p] = self._solve_side(p, 1.0)
        return self._low[p]

    def _solve(self, p: int) -> Interval:
        return (self._minimum(p), -self._solve_side(p, -1.0))

    def _solve_side(self, p: int, sign: float) -> float:
        """The minimum of ``sign * x[p]``: exact by subtraction when a relation leaves p the only unknown."""
        found = self._model(p)
        if found is None:
            return (0.0 if self.nonnegative else -math.inf) if sign > 0 else -math.inf
        target = int(np.searchsorted(found.columns, p))
        value = found.determined(target)
        if value is not None:
            return sign * value
        objective = np.zeros(len(found.columns))
        objective[target] = sign
        return self._optimum(found, objective)

    def _optimum(self, found: _Component, objective: np.ndarray) -> float:
        value, point = found.model.optimum(objective)
        if point is not None:
            self.seen_low[found.columns] = np.minimum(self.seen_low[found.columns], point)
            self.seen_high[found.columns] = np.maximum(self.seen_high[found.columns], point)
        return value


@dataclass(frozen=True)
class _Component:
    """One component of an audit: its model, its columns (positions in the audit) and its equalities."""

    model: _Model
    columns: np.ndarray
    a: csr_matrix
    b: np.ndarray

    def determined(self, target: int) -> float | None:
        """The value of column ``target`` when a relation has it as its only unknown: subtraction gives it away."""
        sizes = np.diff(self.a.indptr)
        by_column = self.model.columns
        rows = by_column.indices[by_column.indptr[target] : by_column.indptr[target + 1]]
        alone = np.flatnonzero(sizes[rows] == 1)
        if not len(alone):
            return None
        row = rows[alone[0]]
        return float(self.b[row] / by_column.data[by_column.indptr[target] + alone[0]])


def _components(a: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """A label per variable and per equality: variables sharing an equality share a label (the components of
    the bipartite graph of variables and equalities)."""
    m, n = a.shape
    # nodes: the n variables, then the m equalities, each equality's row pointing at its variables
    pointers = np.concatenate([np.zeros(n, dtype=a.indptr.dtype), a.indptr])
    edges = csr_matrix((np.ones_like(a.data), a.indices, pointers), shape=(n + m, n + m))
    labels = np.asarray(connected_components(edges, directed=False)[1], dtype=np.intp)
    return labels[:n], labels[n:]


def _width(interval: Interval) -> float:
    return interval[1] - interval[0]
