"""The linear programmes of the suppression audit: what an intruder can infer about each withheld cell.

A table's relations (``policies.secondary``) are one sparse matrix over all its cells. Given a set of
suppressed cells, the published cells become constants and the relations become equalities over the
suppressed ones; the equalities split into connected components, and each component is one HiGHS
model, passed once and then solved again with only its objective changed (HiGHS keeps the basis, so
every further solve is a warm start). The smallest and largest value a cell can take are two such
solves. Every optimum is a feasible table, so it also widens what is known of every other cell of the
component: ``wide_enough`` answers from those points when it can and solves only when it must.

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
        self.solver = highs._Highs()
        self.solver.setOptionValue("output_flag", False)
        self.solver.setOptionValue("presolve", "off")
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
        """Solve from the last basis; a warm start that ends undecided (``kUnknown``) is solved again cold."""
        for cold in (False, True):
            if cold:
                self.solver.clearSolver()
            self.solver.setOptionValue("time_limit", self.solver.getRunTime() + self.clock.remaining())
            self.solver.run()
            status = self.solver.getModelStatus()
            if status != highs.HighsModelStatus.kUnknown:
                break
        return status

    def _unbounded_or_infeasible(self) -> tuple[float, np.ndarray | None]:
        """Presolve could not tell: a zero objective decides whether any table fits at all."""
        self.solver.changeColsCost(self.n, self.all, np.zeros(self.n))
        if self._run() == highs.HighsModelStatus.kOptimal:
            return -math.inf, None
        raise InconsistentTable("the published cells contradict the table's margins")


class Audit:
    """The relations over one suppressed set, split into components, each solved lazily by its own model.

    ``matrix`` is the table's relations over all cells (a row per relation: -1 for the total, +1 per
    part), ``values`` the scaled cell values. Published cells move to the right-hand side; a relation
    left without a suppressed cell must hold exactly, or the table is inconsistent.
    """

    def __init__(self, matrix: csr_matrix, values: np.ndarray, suppressed: frozenset[int], nonnegative: bool, clock: Clock) -> None:
        self.suppressed = suppressed
        self.order = sorted(suppressed)
        self.position = {cell: p for p, cell in enumerate(self.order)}
        self.nonnegative, self.clock = nonnegative, clock
        published = np.ones(matrix.shape[1], dtype=bool)
        published[self.order] = False
        constant = matrix[:, published] @ values[published] if matrix.shape[0] else np.zeros(0)
        a = matrix[:, self.order].tocsr()
        used = np.diff(a.indptr) > 0
        if np.any(np.abs(constant[~used]) > TOLERANCE):
            raise InconsistentTable("the published cells contradict the table's margins")
        self.a, self.b = a[used], -constant[used]
        self.component = _components(self.a, len(self.order))
        self.seen_low = np.full(len(self.order), math.inf)
        self.seen_high = np.full(len(self.order), -math.inf)
        self._exact: dict[int, Interval] = {}
        self._models: dict[int, tuple[_Model, np.ndarray, csr_matrix, np.ndarray]] = {}

    def linked(self, cell: int) -> list[int]:
        """The suppressed cells in the same component as ``cell`` (itself included)."""
        label = self.component[self.position[cell]]
        return [self.order[p] for p in np.flatnonzero(self.component == label)]

    def interval(self, cell: int) -> Interval:
        if cell not in self._exact:
            self._exact[cell] = self._solve(self.position[cell])
        return self._exact[cell]

    def wide_enough(self, cell: int, need: float) -> bool:
        p = self.position[cell]
        if self.seen_high[p] - self.seen_low[p] < need - TOLERANCE:
            self._probe(p)
        return self.seen_high[p] - self.seen_low[p] >= need - TOLERANCE or _width(self.interval(cell)) >= need - TOLERANCE

    def _model(self, p: int) -> tuple[_Model, np.ndarray, csr_matrix, np.ndarray] | None:
        """p's component: its model, its columns (positions), its equalities and right-hand side; None without equalities."""
        label = int(self.component[p])
        if label not in self._models:
            columns = np.flatnonzero(self.component == label)
            sub = self.a[:, columns]
            rows = np.flatnonzero(np.diff(sub.indptr) > 0)
            if not len(rows):
                return None
            a, b = sub[rows], self.b[rows]
            self._models[label] = (_Model(csc_matrix(a), b, self.nonnegative, self.clock), columns, a, b)
            self._explore(label, PROBES)
        return self._models[label]

    def _explore(self, label: int, directions: int) -> None:
        """Optimise both ways along fixed pseudo-random directions, which collects spread-out tables and, with
        them, proves the component feasible before any shortcut in ``_solve`` could hide a contradiction."""
        model, columns, _, _ = self._models[label]
        for direction in np.random.default_rng(len(columns)).uniform(-1, 1, (directions, len(columns))):
            self._optimum(model, columns, direction)
            self._optimum(model, columns, -direction)

    def _probe(self, p: int) -> None:
        self._model(p)

    def _solve(self, p: int) -> Interval:
        found = self._model(p)
        if found is None:
            return (0.0 if self.nonnegative else -math.inf, math.inf)
        model, columns, a, b = found
        target = int(np.searchsorted(columns, p))
        alone = np.flatnonzero((np.diff(a.indptr) == 1) & (a[:, target].toarray().ravel() != 0))
        if len(alone):  # a relation in which this is the only unknown: subtraction gives it away
            value = float(b[alone[0]] / a[alone[0], target])
            return (value, value)
        objective = np.zeros(len(columns))
        objective[target] = 1.0
        low = self._optimum(model, columns, objective)
        return (low, -self._optimum(model, columns, -objective))

    def _optimum(self, model: _Model, columns: np.ndarray, objective: np.ndarray) -> float:
        value, point = model.optimum(objective)
        if point is not None:
            self.seen_low[columns] = np.minimum(self.seen_low[columns], point)
            self.seen_high[columns] = np.maximum(self.seen_high[columns], point)
        return value


def _components(a: csr_matrix, n: int) -> np.ndarray:
    """A label per variable; variables sharing an equality share a label."""
    pattern = (abs(a) > 0).astype(np.int8)
    linked = pattern.T @ pattern if a.shape[0] else csr_matrix((n, n), dtype=np.int8)
    return np.asarray(connected_components(csr_matrix(linked), directed=False)[1], dtype=int)


def _width(interval: Interval) -> float:
    return interval[1] - interval[0]
