"""Calibrated noise for differentially private releases of aggregates the engine has already bounded.

Every random draw comes from an OpenDP measurement: each release builds the measurement on the right
input domain and metric, checks with ``measurement.map(d_in)`` that its privacy loss is within the ε
(and δ) it was given, and only then invokes it. Nothing here samples noise itself.

Neighbouring datasets differ by one privacy unit, added or removed. Before aggregating, the engine
keeps at most ``max_rows`` rows per unit in the whole table and clamps each value to the column's
declared ``[lower, upper]``, so one unit moves

* the vector of cell counts by at most ``max_rows`` in L1 (its rows may be spread over cells);
* the vector of cell sums by at most ``max_rows * max(|lower|, |upper|)`` in L1;
* the vector of the cells' sums of ``value - lower`` and of ``upper - value`` by at most ``max_rows * (upper - lower)`` in L1;
* the values of the cells by at most ``max_rows`` insertions or deletions in all;
* the counts by key by at most ``max_rows`` keys, ``max_rows`` in L1 and ``max_rows`` in L∞.

So one release costs its ε once, however many cells it covers; the ledger composes releases
sequentially (``policies.budget``). Error bounds hold with probability at least 0.95 over the noise:
``|noisy - exact| <= bound95``. They depend only on public parameters and the noisy outputs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import opendp.prelude as dp
from numpy.typing import NDArray
from opendp.accuracy import discrete_laplacian_scale_to_accuracy, laplacian_scale_to_accuracy
from opendp.core import measurement_map

from core.errors import InternalError, ValidationFailed
from policies.budget import Delta, Epsilon
from policies.dp_arguments import (
    check_bounds,
    check_count,
    check_grid,
    check_level,
    check_max_rows,
    check_number,
    check_positive,
    check_type,
)

ALPHA = 0.05  # error bounds are (1 - ALPHA) = 95% bounds
INTEGER = "i64"  # OpenDP's carrier for counts: ``int`` alone would be 32-bit
MAX_THRESHOLD = 2**31 - 1  # the largest key-selection threshold searched
CALIBRATIONS = 1024  # calibrated scales kept (each a few floats)
QUANTILE_CANDIDATES = 1000  # points a quantile chooses from, evenly spaced over the bounds (see noisy_quantiles)
PARALLEL_VALUES = 200_000  # a quantile over more values than this, in all its cells, scores its cells on threads

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class NoisyValue:
    """A released number: ``|value - exact| <= bound95`` with probability at least 0.95.

    ``scale`` is the Laplace scale of the noise in the value's units (for a mean, its two sums' scale over
    the noisy count: a first-order figure; ``bound95`` is the rigorous one).
    """

    value: float
    scale: float
    bound95: float


@dataclass(frozen=True)
class NoisyQuantile:
    """A released quantile, one of the candidates.

    With probability at least 0.95 its rank score ``|(1 - alpha) * #below - alpha * #above|`` is within
    ``rank_bound95`` rows of the best candidate's: a bound in ranks, since one in value units would
    depend on how the data are spread. ``scale`` is the exponential mechanism's noise scale on that score.
    """

    value: float
    scale: float
    rank_bound95: float


@dataclass(frozen=True)
class MeanRelease:
    """What ``noisy_means`` drew: its whole ε on one Laplace release of two sums per cell.

    ``above`` are the noisy sums of ``value - lower``, ``below`` of ``upper - value`` (DP releases, with
    Laplace noise of ``scale`` each); the noisy count ``(above + below) / (upper - lower)`` and the
    noisy sum ``lower * count + above`` follow from them.
    """

    epsilon: Epsilon
    scale: float
    above: tuple[float, ...]
    below: tuple[float, ...]


@dataclass(frozen=True)
class Mechanism:
    """An OpenDP measurement calibrated for one release: ``measurement.map(d_in)`` is the loss it may cost."""

    measurement: dp.Measurement
    d_in: Any
    scale: float
    threshold: int | None = None  # key selection only


# --- calibration ---------------------------------------------------------------------------------


def laplace_scale_for(epsilon: Epsilon, sensitivity: float) -> float:
    """The smallest Laplace scale at which OpenDP's ``make_laplace`` is ε-DP for this L1 sensitivity."""
    sens = check_positive(sensitivity, "sensitivity")
    return _calibrated(_Laplace(float, vector=False), sens, epsilon, sensitivity=sens).scale


def counts_mechanism(epsilon: Epsilon, max_rows: int) -> Mechanism:
    """Discrete Laplace (OpenDP ``make_laplace`` on integers) on the vector of cell counts; d_in = max_rows in L1."""
    rows = check_max_rows(max_rows)
    return _calibrated(_Laplace(INTEGER, vector=True), rows, epsilon, sensitivity=rows)


def sums_mechanism(epsilon: Epsilon, max_rows: int, lower: float, upper: float) -> Mechanism:
    """Laplace on the vector of cell sums; d_in = max_rows * max(|lower|, |upper|) in L1."""
    low, high = check_bounds(lower, upper)
    sensitivity = check_max_rows(max_rows) * max(abs(low), abs(high))
    if sensitivity == 0:
        raise ValidationFailed("bounds [0, 0] leave nothing to release", details={"field": "bounds"})
    return _calibrated(_Laplace(float, vector=True), sensitivity, epsilon, sensitivity=sensitivity)


def pair_sums_mechanism(epsilon: Epsilon, max_rows: int, lower: float, upper: float) -> Mechanism:
    """Laplace on the vector of every cell's sum of ``value - lower`` and sum of ``upper - value``; d_in = max_rows * (upper - lower) in L1.

    A row adds ``value - lower`` to one sum and ``upper - value`` to the other: ``upper - lower`` in all.
    """
    low, high = check_bounds(lower, upper)
    width = math.nextafter(high - low, math.inf)  # round the difference up
    sensitivity = check_max_rows(max_rows) * width
    return _calibrated(_Laplace(float, vector=True), sensitivity, epsilon, sensitivity=sensitivity)


def quantile_mechanism(alpha: float, epsilon: Epsilon, max_rows: int, lower: float, upper: float, candidates: int) -> Mechanism:
    """Clamp, then OpenDP's exponential mechanism (``make_private_quantile``) over evenly spaced candidates.

    A unit may put rows into several cells, at most ``max_rows`` in all, and each cell runs its own
    measurement. Its loss is linear in the rows a unit adds or removes, so it is calibrated to ε/max_rows
    per row (d_in = 1): a unit with r_i rows in cell i then costs sum(r_i) * ε/max_rows <= ε in all.
    """
    rows = check_max_rows(max_rows)
    low, high = check_bounds(lower, upper)
    make = _Quantile(low, high, check_level(alpha), tuple(check_grid(low, high, candidates)))
    one_row = _calibrated(make, 1, epsilon.split(rows), sensitivity=2)  # at most 2 * max(alpha, 1 - alpha)
    mechanism = Mechanism(one_row.measurement, rows, one_row.scale)
    _check(mechanism, epsilon)
    return mechanism


def threshold_mechanism(epsilon: Epsilon, delta: Delta, max_rows: int) -> Mechanism:
    """OpenDP's Laplace threshold mechanism on counts by key; d_in = (max_rows, max_rows, max_rows) in (L0, L1, L∞).

    The scale is the smallest meeting ε; the threshold the smallest meeting δ at that scale.
    """
    rows = check_max_rows(max_rows)
    check_type(epsilon, Epsilon)
    check_type(delta, Delta)
    if delta.value == 0:
        raise ValidationFailed("selecting keys without a public domain needs delta > 0", details={"field": "delta"})
    scale, threshold = _threshold_parameters(rows, epsilon, delta)
    mechanism = Mechanism(_make_threshold(scale, threshold), (rows, rows, rows), scale, threshold)
    _check(mechanism, epsilon, delta)
    return mechanism


def _make_threshold(scale: float, threshold: int) -> dp.Measurement:
    _contrib()
    space = dp.map_domain(dp.atom_domain(T="u32"), dp.atom_domain(T=INTEGER)), dp.l01inf_distance(dp.absolute_distance(T=INTEGER))
    return dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)


@functools.lru_cache(maxsize=CALIBRATIONS)
def _threshold_parameters(rows: int, epsilon: Epsilon, delta: Delta) -> tuple[float, int]:
    """The smallest scale meeting ε, then the smallest threshold meeting δ at it (cached: public inputs only)."""
    d_in = (rows, rows, rows)
    guess = rows / epsilon.value
    try:
        scale = dp.binary_search(
            lambda s: _loss(_make_threshold(s, MAX_THRESHOLD), d_in)[0] <= epsilon.value, bounds=(guess / 8, guess * 8)
        )
        found = dp.binary_search(lambda t: _loss(_make_threshold(scale, int(t)), d_in)[1] <= delta.value, bounds=(rows, MAX_THRESHOLD))
    except ValueError as error:
        raise ValidationFailed("no threshold achieves this epsilon and delta", details={"field": "delta"}) from error
    return float(scale), int(found)


# --- releases ------------------------------------------------------------------------------------


def noisy_counts(counts: Sequence[int], epsilon: Epsilon, max_rows: int) -> list[NoisyValue]:
    """Counts of rows per cell plus discrete Laplace noise.

    bound95 is OpenDP's ``discrete_laplacian_scale_to_accuracy(scale, 0.05)``, floored (the noise is an
    integer, so flooring keeps the coverage).
    """
    return _draw_counts(counts_mechanism(epsilon, max_rows), [check_count(count) for count in counts])


def noisy_sums(sums: Sequence[float], epsilon: Epsilon, max_rows: int, lower: float, upper: float) -> list[NoisyValue]:
    """Sums of clamped values per cell plus Laplace noise; bound95 = scale * ln(1/0.05) (OpenDP accuracy).

    A sum of values in [lower, upper] is at least 0 when lower >= 0 and at most 0 when upper <= 0, so
    the noisy sum is clamped to that sign: post-processing, which only ever moves it closer to the exact sum.

    The sums are taken as exact: floating-point rounding in the engine's summation is not part of the
    sensitivity, so the engine should sum exactly (DECIMAL or integers) where it can.
    """
    low, high = check_bounds(lower, upper)
    floor, ceiling = (0.0 if low >= 0 else -math.inf), (0.0 if high <= 0 else math.inf)
    released = _draw_sums(sums_mechanism(epsilon, max_rows, low, high), [check_number(total, "sum") for total in sums])
    return [dataclasses.replace(r, value=min(max(r.value, floor), ceiling)) for r in released]


def noisy_means(
    sums: Sequence[float], counts: Sequence[int], epsilon: Epsilon, max_rows: int, lower: float, upper: float
) -> tuple[list[NoisyValue], MeanRelease]:
    """Means per cell from one Laplace release, of the whole ε, of ``A = sum(value - lower)`` and ``B = sum(upper - value)``.

    A row adds ``value - lower`` to A and ``upper - value`` to B, ``w = upper - lower`` in all, so the
    vector of every cell's (A, B) has L1 sensitivity ``max_rows * w`` (``pair_sums_mechanism``). The
    count ``(A + B) / w`` and the centred sum ``(A - B) / 2`` follow, and the mean is
    ``lower + w * A / (A + B)``, clamped to the bounds (which only moves it closer to the exact mean).

    Why not half of ε on a count and half on a sum centred on the midpoint m? With h = w / 2, the mean's
    first-order error is ``(e_A * (upper - mean) - e_B * (mean - lower)) / (w * count)``, of variance
    ``4 (h^2 + (mean - m)^2) (max_rows / ε)^2 / count^2``; the split's, ``(e_S - (mean - m) * e_C) / count``,
    has twice that variance whatever the mean: a row's (A, B) lies on a face of the L1 ball, so none of
    the sensitivity the noise pays for is wasted.

    bound95 is analytic. With ``a`` the 97.5% accuracy of the Laplace noise, |e_A| <= a and |e_B| <= a
    together with probability >= 0.95 (union bound). When the noisy count C is at least 1, the error is
    exactly ``(e_A * (upper - mean) - e_B * (mean - lower)) / (w * C)``, at most ``a / C`` in absolute
    value; never more than w. Cells with C < 1 get ``midpoint + centred sum``, clamped, and bound w.
    """
    if len(sums) != len(counts):
        raise ValidationFailed("one count per sum", details={"field": "counts"})
    low, high = check_bounds(lower, upper)
    width = high - low
    exact_counts = [check_count(count) for count in counts]
    exact_sums = [check_number(total, "sum") for total in sums]
    above = [total - low * count for total, count in zip(exact_sums, exact_counts, strict=True)]
    below = [high * count - total for total, count in zip(exact_sums, exact_counts, strict=True)]
    mechanism = pair_sums_mechanism(epsilon, max_rows, low, high)
    noisy = [float(value) for value in mechanism.measurement(above + below)]
    noisy_above, noisy_below = noisy[: len(above)], noisy[len(above) :]
    accuracy = float(laplacian_scale_to_accuracy(mechanism.scale, ALPHA / 2))
    midpoint = (low + high) / 2
    means = []
    for a, b in zip(noisy_above, noisy_below, strict=True):
        count = (a + b) / width
        denominator = max(count, 1.0)
        value = min(max(midpoint + (a - b) / 2 / denominator, low), high)
        bound = width if count < 1 else min(width, accuracy / count)
        means.append(NoisyValue(value, mechanism.scale / denominator, bound))
    return means, MeanRelease(epsilon, mechanism.scale, tuple(noisy_above), tuple(noisy_below))


def noisy_quantiles(
    values_per_cell: Sequence[NDArray[np.floating[Any]]],
    alpha: float,
    epsilon: Epsilon,
    max_rows: int,
    lower: float,
    upper: float,
    *,
    candidates: int = QUANTILE_CANDIDATES,
) -> list[NoisyQuantile]:
    """The ``alpha``-quantile of each cell's values by the exponential mechanism over ``candidates`` points.

    ``candidates`` values evenly spaced over [lower, upper] (both included) are scored by OpenDP. The
    released value is one of them, so their spacing is an error floor; more candidates cost only a
    logarithm in the rank bound (1,000 rather than 100: rank_bound95 9.9 rather than 7.6 score scales,
    spacing (upper - lower) / 999).
    rank_bound95 = scale * ln((candidates - 1) / 0.05): the noise on each score is exponential with this
    scale, so a candidate whose score is t worse than the best wins with probability at most exp(-t / scale),
    and a union bound over the other candidates gives the 95% bound.
    """
    mechanism = quantile_mechanism(alpha, epsilon, max_rows, lower, upper, candidates)
    rank_bound = mechanism.scale * math.log((candidates - 1) / ALPHA)
    cells = [_cell_values(values) for values in values_per_cell]

    def release(data: NDArray[np.float64]) -> NoisyQuantile:
        return NoisyQuantile(float(mechanism.measurement(data)), mechanism.scale, rank_bound)

    workers = min(len(cells), os.cpu_count() or 1)
    if workers < 2 or sum(data.size for data in cells) < PARALLEL_VALUES:
        return [release(data) for data in cells]
    # OpenDP releases the GIL while it scores a cell (its measurements are Send + Sync): large cells run side by side.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(release, cells))


def _cell_values(values: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """One cell's values as a writable, contiguous float64 array, checked flat and free of NaN.

    A contiguous float64 array crosses into OpenDP as one buffer; a list is checked item by item in
    Python (15x slower). OpenDP passes it through ctypes, which refuses a read-only array (one Arrow
    lent without a copy): that one is copied.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or np.isnan(data).any():
        raise ValidationFailed("a cell's values are one flat array without NaN", details={"field": "values"})
    return np.require(data, requirements=["C_CONTIGUOUS", "WRITEABLE"])


def select_keys(counts_by_key: Mapping[K, int], epsilon: Epsilon, delta: Delta, max_rows: int) -> frozenset[K]:
    """The keys whose noisy count clears the threshold: a DP stand-in for a grouping column's domain.

    For a grouping column without a declared public domain: releasing the keys present in the data
    would disclose that someone has them. Pass the row count of every key present; the result is a set,
    so no order can leak the counts. Aggregating over the selected keys is a further release.
    """
    return threshold_keys(threshold_mechanism(epsilon, delta, max_rows), counts_by_key)


def threshold_keys(mechanism: Mechanism, counts_by_key: Mapping[K, int]) -> frozenset[K]:
    """``select_keys`` with a mechanism already calibrated by ``threshold_mechanism`` (whose threshold a caller reports)."""
    if mechanism.threshold is None:
        raise InternalError("key selection needs a threshold mechanism")
    keys = list(counts_by_key)
    released = mechanism.measurement({position: check_count(counts_by_key[key]) for position, key in enumerate(keys)})
    return frozenset(keys[position] for position in released)


# --- helpers -------------------------------------------------------------------------------------


def _draw_counts(mechanism: Mechanism, exact: list[int]) -> list[NoisyValue]:
    noisy = mechanism.measurement(exact)
    bound = float(math.floor(discrete_laplacian_scale_to_accuracy(mechanism.scale, ALPHA)))
    return [NoisyValue(float(value), mechanism.scale, bound) for value in noisy]


def _draw_sums(mechanism: Mechanism, exact: list[float]) -> list[NoisyValue]:
    noisy = mechanism.measurement(exact)
    bound = float(laplacian_scale_to_accuracy(mechanism.scale, ALPHA))
    return [NoisyValue(float(value), mechanism.scale, bound) for value in noisy]


def _contrib() -> None:
    """OpenDP's proven-but-not-yet-vetted ("contrib") constructors; idempotent, called at use, not import."""
    dp.enable_features("contrib")


def _calibrated(make: _Recipe, d_in: Any, epsilon: Epsilon, sensitivity: float) -> Mechanism:
    """``make(scale)`` at the smallest scale at which it is (d_in, ε)-close, checked before it is returned."""
    check_type(epsilon, Epsilon)
    scale = _smallest_scale(make, d_in, epsilon, sensitivity / epsilon.value)
    mechanism = Mechanism(make(scale), d_in, scale)
    _check(mechanism, epsilon)
    return mechanism


@functools.lru_cache(maxsize=CALIBRATIONS)
def _smallest_scale(make: _Recipe, d_in: Any, epsilon: Epsilon, guess: float) -> float:
    """OpenDP's binary search for the scale, within a factor 8 of ``guess`` (the scale a Laplace-like map implies).

    Cached: the answer depends only on public inputs, and a search costs dozens of privacy-map calls
    (about 10 ms), as much as the rest of a small job's noise.
    """
    try:
        return float(dp.binary_search_param(make, d_in=d_in, d_out=epsilon.value, bounds=(guess / 8, guess * 8)))
    except ValueError as error:
        raise ValidationFailed("no noise scale achieves this epsilon", details={"field": "epsilon"}) from error


@dataclass(frozen=True)
class _Laplace:
    """OpenDP's ``make_laplace`` on one number, or on a vector under L1; by value, so calibrations can be cached."""

    carrier: type | str
    vector: bool

    def __call__(self, scale: float) -> dp.Measurement:
        _contrib()
        atom = dp.atom_domain(T=self.carrier, nan=False) if self.carrier is float else dp.atom_domain(T=self.carrier)
        if self.vector:
            return dp.m.make_laplace(dp.vector_domain(atom), dp.l1_distance(T=self.carrier), scale)
        return dp.m.make_laplace(atom, dp.absolute_distance(T=self.carrier), scale)


@dataclass(frozen=True)
class _Quantile:
    """Clamp to ``[lower, upper]``, then OpenDP's exponential mechanism for the ``alpha``-quantile over ``grid``."""

    lower: float
    upper: float
    alpha: float
    grid: tuple[float, ...]

    def __call__(self, scale: float) -> dp.Measurement:
        _contrib()
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
        quantile = dp.m.then_private_quantile(dp.max_divergence(), list(self.grid), self.alpha, scale)
        chain: dp.Measurement = space >> dp.t.then_clamp((self.lower, self.upper)) >> quantile
        return chain


_Recipe = _Laplace | _Quantile


def _check(mechanism: Mechanism, epsilon: Epsilon, delta: Delta | None = None) -> None:
    """Refuse to run a measurement whose privacy map exceeds what it was given."""
    loss = _loss(mechanism.measurement, mechanism.d_in)
    within = loss <= epsilon.value if delta is None else loss[0] <= epsilon.value and loss[1] <= delta.value
    if not within:
        raise InternalError(f"calibrated measurement would lose {loss} at d_in={mechanism.d_in}")


def _loss(measurement: dp.Measurement, d_in: Any) -> Any:
    """``measurement.map(d_in)``: the privacy loss OpenDP proves for inputs ``d_in`` apart."""
    return measurement_map(measurement, d_in)
