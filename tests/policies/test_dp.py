"""DP mechanisms: calibration against OpenDP's privacy maps, noise that matches its scale, honest 95% bounds.

Statistical tests use fixed draw counts and tolerances of about six standard errors, so that they
do not flake: 2,000 draws of a Laplace noise estimate its standard deviation to about 2.5%.
"""

from __future__ import annotations

import ast
import csv
import inspect
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import policies.budget
import policies.dp
from core.errors import InternalError, ValidationFailed
from policies.budget import Delta, Epsilon
from policies.dp import (
    Mechanism,
    counts_mechanism,
    laplace_scale_for,
    noisy_counts,
    noisy_means,
    noisy_quantiles,
    noisy_sums,
    pair_sums_mechanism,
    quantile_mechanism,
    select_keys,
    sums_mechanism,
    threshold_keys,
    threshold_mechanism,
)
from tests.conftest import data_file

DRAWS = 2_000
LN20 = math.log(20)  # a Laplace variable of scale b exceeds b * ln(20) in absolute value with probability 0.05


def pums_incomes() -> np.ndarray:
    with data_file("smartnoise-sdk/PUMS_pid.csv").open(newline="") as handle:
        return np.array([float(row["income"]) for row in csv.DictReader(handle)])


def discrete_laplace_std(scale: float) -> float:
    q = math.exp(-1 / scale)
    return math.sqrt(2 * q) / (1 - q)


def beyond(errors: np.ndarray, bound: float) -> float:
    return float(np.mean(np.abs(errors) > bound))


# --- calibration ---------------------------------------------------------------------------------

SCALES = [(1.0, 1.0), (0.1, 1.0), (1.0, 500_000.0), (0.3, 3.0), (2.0, 0.25), (0.01, 7 * 500_000.0)]


@pytest.mark.parametrize(("epsilon", "sensitivity"), SCALES, ids=[f"eps{e}-sens{s}" for e, s in SCALES])
def test_laplace_scale_is_sensitivity_over_epsilon(epsilon: float, sensitivity: float) -> None:
    assert laplace_scale_for(Epsilon(epsilon), sensitivity) == pytest.approx(sensitivity / epsilon, rel=1e-12)


@pytest.mark.parametrize("max_rows", [1, 3, 50])
def test_count_scale_is_max_rows_over_epsilon(max_rows: int) -> None:
    assert counts_mechanism(Epsilon(0.5), max_rows).scale == pytest.approx(max_rows / 0.5, rel=1e-12)


SUM_BOUNDS = [(0.0, 100.0, 100.0), (-30.0, 10.0, 30.0), (-5.0, -1.0, 5.0), (2.5, 4.0, 4.0)]


@pytest.mark.parametrize(("lower", "upper", "reach"), SUM_BOUNDS, ids=[f"[{lo},{hi}]" for lo, hi, _ in SUM_BOUNDS])
def test_sum_scale_is_max_rows_times_largest_magnitude_over_epsilon(lower: float, upper: float, reach: float) -> None:
    assert sums_mechanism(Epsilon(0.25), 4, lower, upper).scale == pytest.approx(4 * reach / 0.25, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 0.25, 0.9])
def test_quantile_scale_follows_the_score_sensitivity(alpha: float) -> None:
    # The score |(1 - alpha) * #below - alpha * #above| moves by at most max(alpha, 1 - alpha) per row.
    mechanism = quantile_mechanism(alpha, Epsilon(0.5), 3, 0.0, 10.0, 50)
    assert mechanism.scale == pytest.approx(2 * 3 * max(alpha, 1 - alpha) / 0.5, rel=1e-9)


def test_threshold_scale_and_threshold() -> None:
    mechanism = threshold_mechanism(Epsilon(1.0), Delta(1e-6), 1)
    assert mechanism.scale == pytest.approx(1.0, rel=1e-12)
    assert mechanism.threshold is not None
    looser = threshold_mechanism(Epsilon(1.0), Delta(1e-3), 1)
    assert looser.threshold is not None
    assert looser.threshold < mechanism.threshold  # a larger delta lets rarer keys through


BUILDERS: dict[str, Callable[[Epsilon], Mechanism]] = {
    "counts": lambda eps: counts_mechanism(eps, 5),
    "sums": lambda eps: sums_mechanism(eps, 5, -10.0, 1000.0),
    "pair-sums": lambda eps: pair_sums_mechanism(eps, 5, -10.0, 1000.0),
    "quantile": lambda eps: quantile_mechanism(0.5, eps, 5, 0.0, 1000.0, 100),
    "threshold": lambda eps: threshold_mechanism(eps, Delta(1e-7), 5),
}


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_halving_epsilon_doubles_the_scale(build: Callable[[Epsilon], Mechanism]) -> None:
    assert build(Epsilon(0.4)).scale == pytest.approx(2 * build(Epsilon(0.8)).scale, rel=1e-9)


@pytest.mark.parametrize("epsilon", [0.05, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_the_privacy_map_is_within_epsilon_and_not_wasteful(build: Callable[[Epsilon], Mechanism], epsilon: float) -> None:
    mechanism = build(Epsilon(epsilon))
    loss = mechanism.measurement.map(mechanism.d_in)
    if isinstance(loss, tuple):
        loss, delta = loss
        assert delta <= 1e-7
    assert loss <= epsilon
    assert loss >= epsilon * (1 - 1e-9)


@pytest.mark.parametrize("max_rows", [1, 3, 7])
def test_quantile_loss_is_linear_in_rows_across_cells(max_rows: int) -> None:
    mechanism = quantile_mechanism(0.5, Epsilon(1.0), max_rows, 0.0, 1.0, 20)
    per_row = mechanism.measurement.map(1)
    assert per_row * max_rows <= 1.0  # a unit's rows spread over cells cost no more than all in one
    for rows in range(1, max_rows + 1):
        assert mechanism.measurement.map(rows) <= rows * per_row * (1 + 1e-12)


# --- counts and sums -----------------------------------------------------------------------------


def test_count_noise_matches_its_scale_and_bound() -> None:
    released = noisy_counts([0] * DRAWS, Epsilon(0.5), 5)
    errors = np.array([r.value for r in released])
    scale = released[0].scale
    assert scale == pytest.approx(10.0)
    assert all(value.is_integer() for value in errors)
    assert np.std(errors) == pytest.approx(discrete_laplace_std(scale), rel=0.15)
    assert abs(np.mean(errors)) < 6 * discrete_laplace_std(scale) / math.sqrt(DRAWS)
    bound = released[0].bound95
    assert bound == math.floor(bound)
    assert bound == pytest.approx(scale * LN20, abs=1.5)
    assert 0.02 <= beyond(errors, bound) <= 0.08


def test_counts_keep_their_cells() -> None:
    released = noisy_counts([0, 1_000_000], Epsilon(1.0), 1)
    assert abs(released[1].value - 1_000_000) <= 100
    assert noisy_counts([], Epsilon(1.0), 1) == []


def test_sum_noise_matches_its_scale_and_bound() -> None:
    released = noisy_sums([123.5] * DRAWS, Epsilon(1.0), 2, -5.0, 10.0)
    errors = np.array([r.value for r in released]) - 123.5
    scale = released[0].scale
    assert scale == pytest.approx(20.0)
    assert np.std(errors) == pytest.approx(math.sqrt(2) * scale, rel=0.15)
    assert abs(np.mean(errors)) < 6 * math.sqrt(2) * scale / math.sqrt(DRAWS)
    assert released[0].bound95 == pytest.approx(scale * LN20, rel=1e-6)
    assert 0.02 <= beyond(errors, released[0].bound95) <= 0.08


@pytest.mark.parametrize(("lower", "upper", "sign"), [(0.0, 10.0, 1), (-10.0, 0.0, -1), (2.0, 10.0, 1)], ids=["from-0", "to-0", "positive"])
def test_sums_keep_the_sign_their_bounds_force(lower: float, upper: float, sign: int) -> None:
    released = noisy_sums([0.0] * DRAWS, Epsilon(1.0), 1, lower, upper)
    values = np.array([r.value for r in released])
    assert (sign * values >= 0).all()
    assert 0.4 <= float(np.mean(values == 0)) <= 0.6  # about half the draws had the wrong sign and were clamped to 0


# --- means ---------------------------------------------------------------------------------------


def test_means_spend_their_whole_epsilon_on_one_release_of_two_sums() -> None:
    means, release = noisy_means([30.0, 0.0], [10, 0], Epsilon(1.0), 1, 0.0, 10.0)
    assert release.epsilon == Epsilon(1.0)
    assert release.scale == pytest.approx(10.0, rel=1e-12)  # max_rows * (upper - lower) / epsilon
    assert len(release.above) == len(release.below) == 2
    assert means[0].scale == pytest.approx(release.scale / max((release.above[0] + release.below[0]) / 10.0, 1.0))


def test_the_pair_of_sums_costs_epsilon_for_its_whole_width() -> None:
    mechanism = pair_sums_mechanism(Epsilon(0.5), 3, -2.0, 8.0)
    assert mechanism.d_in == pytest.approx(3 * 10.0)
    assert mechanism.scale == pytest.approx(3 * 10.0 / 0.5, rel=1e-9)
    assert mechanism.measurement.map(mechanism.d_in) <= 0.5


def test_mean_error_has_half_the_variance_of_an_even_sum_count_split() -> None:
    """At count 50 and mean 3 in [0, 10], ε = 1: first-order variance 4 * (h^2 + (mean - m)^2) / count^2 (docstring).

    An even split of ε between a count and a midpoint-centred sum would have twice that: 8 * 29 / 2500.
    """
    true_mean, count = 3.0, 50
    means, _ = noisy_means([true_mean * count] * DRAWS, [count] * DRAWS, Epsilon(1.0), 1, 0.0, 10.0)
    errors = np.array([m.value for m in means]) - true_mean
    expected = math.sqrt(4 * (5.0**2 + 2.0**2)) / count  # h = 5, mean - m = -2
    assert np.std(errors) == pytest.approx(expected, rel=0.15)
    assert np.std(errors) < 0.85 * math.sqrt(8 * (5.0**2 + 2.0**2)) / count


def test_means_stay_in_bounds_and_their_bound_holds() -> None:
    true_mean, count = 3.0, 50
    means, _ = noisy_means([true_mean * count] * DRAWS, [count] * DRAWS, Epsilon(1.0), 1, 0.0, 10.0)
    values = np.array([m.value for m in means])
    bounds = np.array([m.bound95 for m in means])
    assert values.min() >= 0.0
    assert values.max() <= 10.0
    assert bounds.max() <= 10.0
    assert np.median(bounds) < 2.0  # informative at n = 50, not just the width of the bounds
    assert float(np.mean(np.abs(values - true_mean) > bounds)) <= 0.05


def test_empty_and_tiny_cells_get_a_mean_within_bounds() -> None:
    means, _ = noisy_means([0.0, 4.0, -1e6], [0, 1, 3], Epsilon(0.1), 1, -2.0, 8.0)
    for mean in means:
        assert -2.0 <= mean.value <= 8.0
        assert 0 < mean.bound95 <= 10.0


def test_means_need_one_count_per_sum() -> None:
    with pytest.raises(ValidationFailed):
        noisy_means([1.0, 2.0], [1], Epsilon(1.0), 1, 0.0, 10.0)


# --- quantiles -----------------------------------------------------------------------------------


def test_pums_median_income_at_epsilon_one() -> None:
    incomes = pums_incomes()
    median = float(np.median(incomes))
    released = noisy_quantiles([incomes] * 20, 0.5, Epsilon(1.0), 1, 0.0, 500_000.0)
    step = 500_000.0 / 999
    grid = np.linspace(0.0, 500_000.0, 1000)
    assert all(0.0 <= q.value <= 500_000.0 for q in released)
    assert all(np.isclose(grid, q.value).any() for q in released)
    near = sum(abs(q.value - median) <= 2 * step for q in released)
    assert near >= 18
    assert released[0].rank_bound95 == pytest.approx(math.log(999 / 0.05))


def test_quantile_rank_bound_holds() -> None:
    values = np.arange(100, dtype=np.float64)  # candidates 0..99 hit every value; the median's score is 0.5
    released = noisy_quantiles([values] * 500, 0.5, Epsilon(0.5), 1, 0.0, 99.0, candidates=100)
    chosen = np.array([q.value for q in released])
    below = np.array([np.sum(values < c) for c in chosen])
    above = np.array([np.sum(values > c) for c in chosen])
    gaps = np.abs(0.5 * below - 0.5 * above) - 0.5
    assert float(np.mean(gaps > released[0].rank_bound95)) <= 0.05
    assert float(np.median(np.abs(chosen - 49.5))) <= released[0].rank_bound95


def test_quantile_values_outside_the_bounds_are_clamped() -> None:
    released = noisy_quantiles([np.full(200, 1e9), np.full(200, -1e9)], 0.5, Epsilon(1.0), 1, 0.0, 10.0, candidates=11)
    assert 0.0 <= released[0].value <= 10.0
    assert 0.0 <= released[1].value <= 10.0
    assert released[0].value >= 9.0
    assert released[1].value <= 1.0


def test_large_quantiles_run_their_cells_side_by_side_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PARALLEL_VALUES the cells are scored on threads; each answer still lands in its own cell."""
    monkeypatch.setattr(policies.dp, "PARALLEL_VALUES", 1)
    monkeypatch.setattr(policies.dp.os, "cpu_count", lambda: 4)
    pools: list[int] = []

    def pool(max_workers: int) -> ThreadPoolExecutor:
        pools.append(max_workers)
        return ThreadPoolExecutor(max_workers=max_workers)

    monkeypatch.setattr(policies.dp, "ThreadPoolExecutor", pool)
    cells = [np.full(100, float(c)) for c in (2, 7, 4, 9, 0, 5)]
    cells[0].flags.writeable = False  # as Arrow lends its buffers: copied for OpenDP, not refused
    released = noisy_quantiles(cells, 0.5, Epsilon(1000.0), 1, 0.0, 10.0, candidates=11)
    assert [q.value for q in released] == [2.0, 7.0, 4.0, 9.0, 0.0, 5.0]
    assert pools == [4]


@pytest.mark.parametrize("values", [np.array([1.0, math.nan]), np.ones((2, 2))], ids=["nan", "two-dimensional"])
def test_quantile_input_must_be_flat_and_without_nan(values: np.ndarray) -> None:
    with pytest.raises(ValidationFailed):
        noisy_quantiles([values], 0.5, Epsilon(1.0), 1, 0.0, 10.0)


# --- key selection -------------------------------------------------------------------------------


def test_select_keys_drops_rare_keys_and_keeps_common_ones() -> None:
    for _ in range(20):
        assert select_keys({"rare": 1, "common": 10_000}, Epsilon(1.0), Delta(1e-6), 1) == frozenset({"common"})
    # The same measurement, drawn 2,000 times: a count of 1 passes with probability about 1e-6 each time.
    mechanism = threshold_mechanism(Epsilon(1.0), Delta(1e-6), 1)
    released = [mechanism.measurement({0: 1, 1: 10_000}) for _ in range(DRAWS)]
    assert sum(0 in r for r in released) == 0
    assert sum(1 in r for r in released) == DRAWS


def test_select_keys_returns_an_unordered_set_of_any_keys() -> None:
    selected = select_keys({None: 10_000, (1, "a"): 10_000, 3: 0}, Epsilon(1.0), Delta(1e-6), 2)
    assert selected == frozenset({None, (1, "a")})


def test_threshold_keys_runs_a_calibrated_mechanism() -> None:
    mechanism = threshold_mechanism(Epsilon(1.0), Delta(1e-6), 1)
    assert threshold_keys(mechanism, {"rare": 1, "common": 10_000}) == frozenset({"common"})
    with pytest.raises(InternalError):
        threshold_keys(counts_mechanism(Epsilon(1.0), 1), {"a": 100})


def test_select_keys_needs_delta() -> None:
    with pytest.raises(ValidationFailed):
        select_keys({"a": 100}, Epsilon(1.0), Delta(0.0), 1)


def test_select_keys_refuses_an_unreachable_delta() -> None:
    with pytest.raises(ValidationFailed):
        select_keys({"a": 100}, Epsilon(1.0), Delta(1e-300), 1)


# --- validation and the rules of the module ------------------------------------------------------

BAD_CALLS: dict[str, Callable[[], Any]] = {
    "max-rows-zero": lambda: noisy_counts([1], Epsilon(1.0), 0),
    "max-rows-bool": lambda: noisy_counts([1], Epsilon(1.0), True),
    "max-rows-float": lambda: noisy_counts([1], Epsilon(1.0), 1.5),  # type: ignore[arg-type]
    "negative-count": lambda: noisy_counts([-1], Epsilon(1.0), 1),
    "fractional-count": lambda: noisy_counts([1.5], Epsilon(1.0), 1),  # type: ignore[list-item]
    "bool-count": lambda: noisy_counts([True], Epsilon(1.0), 1),
    "nan-sum": lambda: noisy_sums([math.nan], Epsilon(1.0), 1, 0.0, 1.0),
    "inverted-bounds": lambda: noisy_sums([1.0], Epsilon(1.0), 1, 1.0, 0.0),
    "equal-bounds": lambda: noisy_means([1.0], [1], Epsilon(1.0), 1, 1.0, 1.0),
    "infinite-bound": lambda: noisy_sums([1.0], Epsilon(1.0), 1, 0.0, math.inf),
    "alpha-above-one": lambda: noisy_quantiles([np.ones(3)], 1.5, Epsilon(1.0), 1, 0.0, 1.0),
    "one-candidate": lambda: noisy_quantiles([np.ones(3)], 0.5, Epsilon(1.0), 1, 0.0, 1.0, candidates=1),
    "sensitivity-zero": lambda: laplace_scale_for(Epsilon(1.0), 0.0),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments_are_refused(call: Callable[[], Any]) -> None:
    with pytest.raises(ValidationFailed):
        call()


BARE_NUMBERS: dict[str, Callable[[], Any]] = {
    "counts": lambda: noisy_counts([1], 1.0, 1),  # type: ignore[arg-type]
    "laplace": lambda: laplace_scale_for(0.5, 1.0),  # type: ignore[arg-type]
    "keys-epsilon": lambda: select_keys({"a": 1}, 1.0, Delta(1e-6), 1),  # type: ignore[arg-type]
    "keys-delta": lambda: select_keys({"a": 1}, Epsilon(1.0), 1e-6, 1),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", BARE_NUMBERS.values(), ids=BARE_NUMBERS.keys())
def test_a_bare_number_is_not_a_privacy_parameter(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        call()


def public_callables() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for module in (policies.dp, policies.budget):
        for name, obj in vars(module).items():
            if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                found.append((f"{module.__name__}.{name}", obj))
                if inspect.isclass(obj):
                    found.extend((f"{module.__name__}.{name}.{m}", f) for m, f in vars(obj).items() if inspect.isfunction(f))
    return found


PUBLIC = public_callables()


@pytest.mark.parametrize("function", [f for _, f in PUBLIC], ids=[n for n, _ in PUBLIC])
def test_no_privacy_parameter_has_a_default(function: Callable[..., Any]) -> None:
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in {"epsilon", "delta", "max_rows", "value"} or parameter.annotation in {"Epsilon", "Delta"}:
            assert parameter.default is inspect.Parameter.empty, f"{parameter.name} has a default"


def test_the_check_sees_every_mechanism() -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in PUBLIC}
    assert {"noisy_counts", "noisy_sums", "noisy_means", "noisy_quantiles", "select_keys", "laplace_scale_for", "Epsilon"} <= names


def test_no_noise_is_drawn_outside_opendp() -> None:
    tree = ast.parse(Path(policies.dp.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not {"random", "secrets"} & (imported | modules)
    assert "random" not in attributes  # no np.random


def test_a_calibration_is_searched_once_and_every_mechanism_still_checked() -> None:
    searches = policies.dp._smallest_scale.cache_info().misses
    first, second = counts_mechanism(Epsilon(0.123), 4), counts_mechanism(Epsilon(0.123), 4)
    assert policies.dp._smallest_scale.cache_info().misses == searches + 1
    assert first.scale == second.scale
    assert first.measurement is not second.measurement  # a fresh measurement, checked by its map each time
