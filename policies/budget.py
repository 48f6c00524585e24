"""Privacy-loss quantities of differential privacy: immutable, validated values with exact arithmetic.

``Epsilon`` and ``Delta`` are the parameters a mechanism is calibrated to; ``Budget`` is an amount of
(ε, δ) loss a ledger adds up: what a grant allows, what a release spends, what remains. There is no
default epsilon anywhere: every privacy parameter is chosen and passed explicitly.

Composition is **sequential only** (basic composition): releases over the same data cost the sum of
their ε and the sum of their δ. That bound holds for any sequence of (ε, δ)-DP releases, adaptive or
not. Tighter accountants (advanced composition, zCDP/RDP) are not used, and parallel composition over
disjoint partitions is not assumed by the ledger (the mechanisms in ``policies.dp`` account for a
privacy unit's rows across all cells of one release themselves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from core.errors import BudgetExhausted, ValidationFailed

if TYPE_CHECKING:
    from policies.model import DPSettings


def _finite(value: object, name: str) -> float:
    """A finite real number (an int or a float, not a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(f"{name} must be a number", details={"field": name})
    if not math.isfinite(value):
        raise ValidationFailed(f"{name} must be finite", details={"field": name})
    return float(value)


def _decimal(value: float) -> Fraction:
    """The exact rational the float's shortest decimal form denotes: ``0.1`` reads as 1/10.

    The ledger counts in these rationals, so that ten spends of ε = 0.1 use up ε = 1 exactly and
    ``(a + b) + c == a + (b + c)`` holds exactly, not only within float tolerance.
    """
    return Fraction(repr(value))


@dataclass(frozen=True, order=True)
class Epsilon:
    """The ε of a release or of a grant: finite and strictly positive (ε = 0 would mean no noise at all)."""

    value: float

    def __post_init__(self) -> None:
        value = _finite(self.value, "epsilon")
        if not value > 0:
            raise ValidationFailed("epsilon must be greater than 0", details={"field": "epsilon"})
        object.__setattr__(self, "value", value)

    def __float__(self) -> float:
        return self.value

    def __add__(self, other: Epsilon) -> Epsilon:
        return Epsilon(float(self.exact + other.exact))

    @property
    def exact(self) -> Fraction:
        """The value as the ledger counts it (the decimal the float was written as)."""
        return _decimal(self.value)

    def split(self, parts: int) -> Epsilon:
        """An equal share for each of ``parts`` releases, rounded down so the shares never add up to more."""
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValidationFailed("an epsilon is split into a positive whole number of parts", details={"field": "parts"})
        share = self.value / parts
        while Fraction(share) * parts > Fraction(self.value):
            share = math.nextafter(share, 0.0)
        return Epsilon(share)


@dataclass(frozen=True, order=True)
class Delta:
    """The δ of approximate DP: the probability the ε guarantee may fail. 0 ≤ δ < 1; 0 is pure DP."""

    value: float

    def __post_init__(self) -> None:
        value = _finite(self.value, "delta")
        if not 0 <= value < 1:
            raise ValidationFailed("delta must be at least 0 and less than 1", details={"field": "delta"})
        object.__setattr__(self, "value", value)

    def __float__(self) -> float:
        return self.value

    def __add__(self, other: Delta) -> Delta:
        return Delta(float(self.exact + other.exact))

    @property
    def exact(self) -> Fraction:
        return _decimal(self.value)


@dataclass(frozen=True)
class Budget:
    """An amount of (ε, δ) privacy loss, in exact rationals: ε ≥ 0 and 0 ≤ δ < 1.

    Build a grant's total or a release's spend with ``Budget.of(Epsilon(...), Delta(...))`` (so ε > 0);
    only what remains can reach ε = 0. Budgets are ordered component-wise, a partial order: (1, 0)
    and (0.5, 1e-6) are not comparable, and neither fits into the other.
    """

    epsilon: Fraction
    delta: Fraction

    def __post_init__(self) -> None:
        if not isinstance(self.epsilon, Fraction) or not isinstance(self.delta, Fraction):
            raise ValidationFailed("a budget holds exact fractions; build it with Budget.of", details={"field": "budget"})
        if self.epsilon < 0:
            raise ValidationFailed("a budget's epsilon cannot be negative", details={"field": "epsilon"})
        if not 0 <= self.delta < 1:
            raise ValidationFailed("a budget's delta must be at least 0 and less than 1", details={"field": "delta"})

    @classmethod
    def of(cls, epsilon: Epsilon, delta: Delta) -> Budget:
        return cls(epsilon.exact, delta.exact)

    @classmethod
    def pure(cls, epsilon: Epsilon) -> Budget:
        """A pure ε-DP amount (δ = 0)."""
        return cls(epsilon.exact, Fraction(0))

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Budget:
        """Read back what ``record`` wrote (exact fractions as strings, e.g. ``"3/10"``)."""
        try:
            return cls(Fraction(record["epsilon"]), Fraction(record["delta"]))
        except (KeyError, ValueError, ZeroDivisionError) as error:
            raise ValidationFailed("not a budget record", details={"field": "budget"}) from error

    def record(self) -> dict[str, str]:
        """The exact amount as strings, for storage: no float rounding on the way to the ledger."""
        return {"epsilon": str(self.epsilon), "delta": str(self.delta)}

    def as_floats(self) -> tuple[float, float]:
        """(ε, δ) for display."""
        return float(self.epsilon), float(self.delta)

    @property
    def exhausted(self) -> bool:
        """Nothing is left to spend: every release needs ε > 0."""
        return self.epsilon == 0

    def __add__(self, other: Budget) -> Budget:
        """Sequential composition. A total δ of 1 or more guarantees nothing: that much is never affordable."""
        delta = self.delta + other.delta
        if delta >= 1:
            raise BudgetExhausted("the combined delta would reach 1", details={"delta": float(delta)})
        return Budget(self.epsilon + other.epsilon, delta)

    def __sub__(self, other: Budget) -> Budget:
        """What is left after spending ``other``; never negative: spending more than there is raises."""
        if not other <= self:
            raise BudgetExhausted("the privacy budget does not cover this release", details=_amounts(other, self))
        return Budget(self.epsilon - other.epsilon, self.delta - other.delta)

    def __le__(self, other: Budget) -> bool:
        return self.epsilon <= other.epsilon and self.delta <= other.delta

    def __ge__(self, other: Budget) -> bool:
        return other <= self

    def __lt__(self, other: Budget) -> bool:
        return self <= other and self != other

    def __gt__(self, other: Budget) -> bool:
        return other < self

    def fits(self, spend: Budget) -> bool:
        """Whether ``spend`` can be taken from this amount (this being what remains)."""
        return spend <= self


def delta_share(total: Delta, epsilon: Epsilon, epsilon_total: Epsilon) -> Delta:
    """The δ a release spending ``epsilon`` of a grant's ``epsilon_total`` may use: ``total * epsilon / epsilon_total``.

    A grant's δ is spent at the rate its ε is, so it lasts exactly as long: the shares of releases whose
    ε add up to at most ``epsilon_total`` add up to at most ``total``. The share is rounded down to a
    float whose exact value and shortest decimal (what the ledger stores) are both within it; it never
    exceeds ``total``.
    """
    _require_kinds(total, epsilon, epsilon_total)
    share = min(total.exact * epsilon.exact / epsilon_total.exact, total.exact)
    value = float(share)
    while value > 0 and (Fraction(value) > share or _decimal(value) > share):
        value = math.nextafter(value, 0.0)
    return Delta(value)


def _require_kinds(total: object, epsilon: object, epsilon_total: object) -> None:
    if not isinstance(total, Delta) or not isinstance(epsilon, Epsilon) or not isinstance(epsilon_total, Epsilon):
        raise TypeError("delta_share takes a Delta and two Epsilons")


def remaining(total: Budget, spent: Budget) -> Budget:
    """What is left of a grant's total; raises ``BudgetExhausted`` if the ledger has spent more."""
    return total - spent


def _amounts(requested: Budget, available: Budget) -> dict[str, object]:
    req_eps, req_delta = requested.as_floats()
    avail_eps, avail_delta = available.as_floats()
    return {
        "requested": {"epsilon": req_eps, "delta": req_delta},
        "available": {"epsilon": avail_eps, "delta": avail_delta},
    }


def selection_delta(settings: DPSettings, epsilon: Epsilon) -> Delta:
    """The δ a job spending ``epsilon`` selects keys with: its share of the grant's δ (0 when the policy has none)."""
    return delta_share(Delta(settings.delta_total), epsilon, Epsilon(settings.epsilon_total))
