"""Checks of the arguments of ``policies.dp``'s mechanisms: bad input is a ``ValidationFailed`` naming the field.

A privacy parameter given as a bare number is a caller's bug (``TypeError``), not bad input.
"""

from __future__ import annotations

import itertools
import math
import operator

import numpy as np

from core.errors import ValidationFailed


def check_type(value: object, kind: type) -> None:
    """A privacy parameter is never a bare number (a bug in the caller, not bad input)."""
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")


def check_max_rows(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailed("max_rows must be a whole number of at least 1", details={"field": "max_rows"})
    return value


def check_count(value: int) -> int:
    try:
        count = operator.index(value)
    except TypeError as error:
        raise ValidationFailed("counts must be whole numbers", details={"field": "counts"}) from error
    if isinstance(value, bool) or count < 0:
        raise ValidationFailed("counts must be whole numbers of at least 0", details={"field": "counts"})
    return count


def check_number(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
        raise ValidationFailed(f"{name} must be a finite number", details={"field": name})
    return float(value)


def check_positive(value: float, name: str) -> float:
    number = check_number(value, name)
    if number <= 0:
        raise ValidationFailed(f"{name} must be greater than 0", details={"field": name})
    return number


def check_bounds(lower: float, upper: float) -> tuple[float, float]:
    low, high = check_number(lower, "lower"), check_number(upper, "upper")
    if not low < high:
        raise ValidationFailed("the declared bounds need lower < upper", details={"field": "bounds"})
    return low, high


def check_level(alpha: float) -> float:
    level = check_number(alpha, "alpha")
    if not 0 <= level <= 1:
        raise ValidationFailed("a quantile's alpha lies in [0, 1]", details={"field": "alpha"})
    return level


def check_grid(lower: float, upper: float, candidates: int) -> list[float]:
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ValidationFailed("at least 2 quantile candidates", details={"field": "candidates"})
    grid = [float(point) for point in np.linspace(lower, upper, candidates)]
    if any(a >= b for a, b in itertools.pairwise(grid)):
        raise ValidationFailed("the bounds are too close for this many candidates", details={"field": "candidates"})
    return grid
