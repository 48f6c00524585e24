"""The noisy answer to a DP plan: which cells are released, and every released value with its error.

The job's ε is split evenly over its releases (sequential composition): one share per aggregate,
and one more for DP key selection when some key has no declared domain. Key selection runs first,
on the same capped rows: OpenDP's Laplace threshold mechanism over the row counts of each
combination of the undeclared keys, at the job's δ; only the combinations whose noisy count clears
the threshold are released, all of them crossed with every value of the declared domains.
Cells with declared keys absent from the data are counted as 0, never omitted: an omitted cell
would say that no unit has that key.

Sensitivities (one privacy unit added or removed, after capping at ``max_rows`` rows):

* row counts, non-NULL counts and sums: the unit's rows, at most ``max_rows`` in all cells together;
* distinct units per cell (COUNT(DISTINCT unit)): the unit counts once in each cell one of its kept
  rows falls in, so it moves at most ``min(max_rows, cells)`` cells by 1 each, whether or not the
  keys are constant per unit (when they are, it is in one cell, and the bound is loose but valid);
* key selection: at most ``max_rows`` keys, by at most ``max_rows`` rows (``policies.dp``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from core.errors import InternalError
from core.schema import Scalar
from jobs.dp.plan import COUNT, UNITS, DPAggregate, DPPlan
from policies import dp
from policies.budget import Delta, Epsilon
from policies.model import Aggregate

Key = tuple[Any, ...]


@dataclass(frozen=True)
class KeySelection:
    """How the released values of the undeclared keys were chosen: what it cost and its threshold."""

    keys: tuple[str, ...]  # the output names of the keys without a declared domain
    epsilon: Epsilon
    delta: Delta
    scale: float
    threshold: int
    released: int  # how many combinations cleared the threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "epsilon": self.epsilon.value,
            "delta": self.delta.value,
            "noise_scale": self.scale,
            "threshold": self.threshold,
            "released": self.released,
            "rule": (
                "keys without a declared domain: a combination is released only when its row count plus Laplace"
                " noise clears the threshold; the others, and whether they occur at all, are not released"
            ),
        }


@dataclass(frozen=True)
class DPAnswer:
    """The noisy cells and each released value's error (one per row, by output column)."""

    table: pa.Table
    errors: dict[str, list[dp.NoisyValue | dp.NoisyQuantile]]
    epsilon_each: Epsilon  # the share of the job's epsilon each aggregate (and the key selection) spent
    selection: KeySelection | None = None


def answer(plan: DPPlan, cells: pa.Table, epsilon: Epsilon, max_rows: int, delta: Delta | None = None) -> DPAnswer:
    """Noise the exact cells of ``plan.sql``; ``delta`` is the job's δ, needed only when the plan selects keys."""
    found = _by_key(cells, len(plan.keys))
    each = epsilon.split(len(plan.aggregates) + (1 if plan.selects_keys else 0))
    selection = None
    chosen: list[Key] = [()]
    if plan.selects_keys:
        if delta is None or delta.value == 0:
            raise InternalError("a plan that selects keys runs only with the job's delta (checked at submission)")
        selection, chosen = _select(plan, found, each, delta, max_rows)
    grid = _grid(plan, chosen)
    empty = {COUNT: 0, UNITS: 0} | {c: 0 for a in plan.aggregates if a.measure for c in (a.sum_column, a.count_column, a.values_column)}
    rows = [found.get(key, empty) for key in grid]
    columns: dict[str, list[Any]] = {key.name: [cell[i] for cell in grid] for i, key in enumerate(plan.keys)}
    errors: dict[str, list[dp.NoisyValue | dp.NoisyQuantile]] = {}
    for agg in plan.aggregates:
        errors[agg.name] = _noise(agg, rows, each, max_rows) if rows else []
        columns[agg.name] = [v.value for v in errors[agg.name]]
    return DPAnswer(pa.table(columns), errors, each, selection)


def _by_key(cells: pa.Table, keys: int) -> dict[Key, dict[str, Any]]:
    """Each cell present in the data by its key: NULL counts and sums as 0, a value list as a float64 array.

    Column by column: a cell's value list never becomes Python objects, one per value (for a median
    over a million rows that took 20 times as long as the engine).
    """
    key_columns = [cells.column(f"__dp_key_{i}").to_pylist() for i in range(keys)]
    found = list(zip(*key_columns, strict=True)) if keys else [()] * cells.num_rows
    columns = {name: _column(cells.column(name)) for name in cells.column_names}
    records = (dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True))
    return dict(zip(found, records, strict=True))


def _column(column: pa.ChunkedArray) -> list[Any]:
    array = column.combine_chunks()
    if isinstance(array, pa.ListArray | pa.LargeListArray):
        return _lists(array)
    return [0 if value is None else value for value in array.to_pylist()]


def _lists(array: pa.ListArray | pa.LargeListArray) -> list[Any]:
    """Each row's list as a float64 array with its NULLs dropped; a NULL list (a cell without values) as 0."""
    child = array.values  # every row's values end to end, ``offsets`` bounding each row's share
    if not (pa.types.is_floating(child.type) or pa.types.is_integer(child.type)):
        raise InternalError(f"a quantile's values are listed as DOUBLE, not {child.type}")
    data = child.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    valid = child.is_valid().to_numpy(zero_copy_only=False) if child.null_count else None
    present = array.is_valid().to_numpy(zero_copy_only=False).tolist()
    bounds = itertools.pairwise(array.offsets.to_numpy().tolist())
    return [
        (data[start:end] if valid is None else data[start:end][valid[start:end]]) if listed else 0
        for listed, (start, end) in zip(present, bounds, strict=True)
    ]


def _select(
    plan: DPPlan, found: Mapping[Key, Mapping[str, Any]], epsilon: Epsilon, delta: Delta, max_rows: int
) -> tuple[KeySelection, list[Key]]:
    """The combinations of the undeclared keys whose noisy row count clears OpenDP's threshold, in sorted order."""
    positions = [i for i, key in enumerate(plan.keys) if key.domain is None]
    counts: dict[Key, int] = {}
    for key, row in found.items():
        combination = tuple(key[i] for i in positions)
        counts[combination] = counts.get(combination, 0) + int(row[COUNT])
    mechanism = dp.threshold_mechanism(epsilon, delta, max_rows)
    chosen = sorted(dp.threshold_keys(mechanism, counts), key=_order)
    assert mechanism.threshold is not None
    return KeySelection(plan.selected, epsilon, delta, mechanism.scale, mechanism.threshold, len(chosen)), chosen


def _order(key: Key) -> tuple[tuple[bool, Any], ...]:
    """Sort released combinations by value, NULL last (the set itself is unordered)."""
    return tuple((value is None, value) for value in key)


def _grid(plan: DPPlan, chosen: list[Key]) -> list[Key]:
    """Every combination of the declared domains, crossed with the selected combinations (declared keys vary slowest)."""
    declared: list[tuple[Scalar, ...]] = [key.domain for key in plan.keys if key.domain is not None]
    grid = []
    for fixed in itertools.product(*declared):
        for picked in chosen:
            values, given = iter(fixed), iter(picked)
            grid.append(tuple(next(given) if key.domain is None else next(values) for key in plan.keys))
    return grid


def _noise(agg: DPAggregate, rows: list[dict[str, Any]], epsilon: Epsilon, max_rows: int) -> list[dp.NoisyValue | dp.NoisyQuantile]:
    if agg.aggregate is Aggregate.COUNT:
        column = COUNT if agg.measure is None else agg.count_column
        return list(dp.noisy_counts([int(r[column]) for r in rows], epsilon, max_rows))
    if agg.aggregate is Aggregate.COUNT_DISTINCT:
        return list(dp.noisy_counts([int(r[UNITS]) for r in rows], epsilon, min(max_rows, len(rows))))
    if agg.alpha is not None:
        # An empty cell (absent from the data, or all NULL) gets the mechanism over an empty array: a
        # candidate drawn uniformly at random, released like any other so its emptiness is not disclosed.
        values = [_values(r.get(agg.values_column)) for r in rows]
        return list(dp.noisy_quantiles(values, agg.alpha, epsilon, max_rows, agg.lower, agg.upper))
    sums = [float(r[agg.sum_column]) for r in rows]
    if agg.aggregate is Aggregate.SUM:
        return list(dp.noisy_sums(sums, epsilon, max_rows, agg.lower, agg.upper))
    if agg.aggregate is Aggregate.AVG:
        means, _ = dp.noisy_means(sums, [int(r[agg.count_column]) for r in rows], epsilon, max_rows, agg.lower, agg.upper)
        return list(means)
    raise InternalError(f"no DP form for {agg.aggregate.value}")


def _values(listed: Any) -> NDArray[np.float64]:
    """A cell's clamped values, NULLs dropped (``_by_key`` turns an absent or NULL list into 0)."""
    return listed if isinstance(listed, np.ndarray) else np.empty(0, dtype=np.float64)
