"""Sanity checks on differentially private answers, for ``dp_vs_smartnoise.py``.

Noise makes exact equality meaningless, so the checks test what the mechanisms promise:
  - hard: a count or sum is within ``HARD_SCALES`` of its calibrated Laplace scales of the exact value
    (a miss has probability e^-25 per value: a failure means a wrong scale or a wrong exact value);
    a median is one of the candidates, inside the bounds;
  - stated: each released value carries a 95% error bound (``bound95``; for a quantile ``rank_bound95``
    on its rank score). Misses are counted; the check fails only when there are so many that a true
    95% bound would give them with probability below ``P_FAIL`` (one-sided binomial tail), so a
    correct mechanism fails it about once in a million runs, a wrong bound almost always;
  - SmartNoise: its own median forms are refused; its count noise has the size of sensitivity 1,
    i.e. it applied the same one-row-per-person assumption as ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.checks import Checks
from policies.dp import QUANTILE_CANDIDATES, NoisyQuantile, NoisyValue

HARD_SCALES = 25
P_FAIL = 1e-6
SN_COUNT_MAE = (0.6, 1.4)  # SmartNoise's count MAE over 1/epsilon: about 1 for Laplace noise of sensitivity 1
INCOME = (0, 500_000)
Answer = Mapping[int, tuple[float, NoisyValue | NoisyQuantile]]


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), 0 < p < 1; terms in log space (math.comb overflows a float past n ~ 1,000)."""
    log_p, log_q = math.log(p), math.log1p(-p)
    log_terms = (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k, n + 1))
    return min(1.0, sum(math.exp(t) for t in log_terms))


def check_answers(checks: Checks, name: str, runs: Sequence[Answer], exact: Mapping[int, float], df: pd.DataFrame, hard_only: bool) -> None:
    """The hard checks and (unless ``hard_only``: too few draws) the stated 95% bounds, over every value of every run."""
    values = [(key, value, error) for run in runs for key, (value, error) in run.items()]
    kind = name.split(maxsplit=1)[0]
    if kind == "median":
        _check_medians(checks, name, values, df, hard_only)
        return
    known = [(exact.get(key, 0.0), value, error) for key, value, error in values if key in exact or kind != "avg"]
    if kind in {"count", "sum"}:
        worst = max(abs(value - truth) / error.scale for truth, value, error in known)
        checks.check(f"{name}: every error within {HARD_SCALES} calibrated scales (worst {worst:.1f})", worst <= HARD_SCALES)
    if not hard_only:
        misses = sum(abs(value - truth) > error.bound95 for truth, value, error in known if isinstance(error, NoisyValue))
        _check_bound(checks, name, len(known), misses)


def _check_medians(checks: Checks, name: str, values: list[tuple[int, float, Any]], df: pd.DataFrame, hard_only: bool) -> None:
    grid = np.linspace(*INCOME, QUANTILE_CANDIDATES)
    on_grid = all(np.min(np.abs(grid - value)) <= 1e-6 * INCOME[1] for _, value, _ in values)
    checks.check(f"{name}: every median is one of the {QUANTILE_CANDIDATES} candidates in [{INCOME[0]}, {INCOME[1]}]", on_grid)
    if hard_only:
        return
    scores = {key: _rank_scores(np.sort(np.clip(group.to_numpy(float), *INCOME)), grid) for key, group in df.groupby("sex")["income"]}
    misses = 0
    for key, value, error in values:
        score = scores[key]
        misses += score[int(np.argmin(np.abs(grid - value)))] - score.min() > error.rank_bound95
    _check_bound(checks, name, len(values), misses, "rank score within rank_bound95 of the best candidate's")


def _rank_scores(data: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """|(1 - alpha) #below - alpha #above| of each candidate, alpha = 1/2 (``policies.dp.NoisyQuantile``)."""
    below = np.searchsorted(data, grid, side="left")
    above = data.size - np.searchsorted(data, grid, side="right")
    return np.asarray(np.abs(0.5 * below - 0.5 * above))


def _check_bound(checks: Checks, name: str, draws: int, misses: int, what: str = "within bound95") -> None:
    tail = binomial_tail(draws, misses, 0.05) if misses else 1.0
    checks.check(
        f"{name}: stated 95% bounds hold ({draws - misses} of {draws} values {what}; tail p = {tail:.2g} >= {P_FAIL:g})",
        tail >= P_FAIL,
    )


def check_smartnoise(
    checks: Checks, sn: Mapping[str, Any], counts: Sequence[Mapping[int, float]], exact: Mapping[int, float], eps: float
) -> None:
    """SmartNoise refused its median forms, and its count noise matches sensitivity 1 (one row per person)."""
    for sql, error in sn["refused"].items():
        checks.check(f"SmartNoise refuses: {sql}", error is not None, "ANSWERED: update this benchmark")
        if error is not None:
            print(f"      -> {error[:100]}")
    ratio = float(np.mean([abs(run[key] - exact[key]) for run in counts for key in exact if key in run])) * eps
    low, high = SN_COUNT_MAE
    checks.check(f"SmartNoise count MAE x epsilon = {ratio:.3f}, in [{low}, {high}] (sensitivity 1: the same contribution bound)",
                 low <= ratio <= high)  # fmt: skip
