"""Privacy-loss values: validation, exact sequential composition, and a budget that never goes negative."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import BudgetExhausted, ValidationFailed
from policies.budget import Budget, Delta, Epsilon, delta_share, remaining

epsilons = st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False).map(Epsilon)
deltas = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False, allow_infinity=False).map(Delta)
budgets = st.builds(Budget.of, epsilons, deltas)


def budget(epsilon: float, delta: float = 0.0) -> Budget:
    return Budget.of(Epsilon(epsilon), Delta(delta))


# --- validation ----------------------------------------------------------------------------------

BAD_EPSILONS = [0, 0.0, -0.1, -1, math.nan, math.inf, -math.inf, True, "1", None]


@pytest.mark.parametrize("value", BAD_EPSILONS, ids=[repr(v) for v in BAD_EPSILONS])
def test_epsilon_must_be_finite_and_positive(value: Any) -> None:
    with pytest.raises(ValidationFailed):
        Epsilon(value)


BAD_DELTAS = [-1e-9, 1, 1.0, 1.5, math.nan, math.inf, False, "0"]


@pytest.mark.parametrize("value", BAD_DELTAS, ids=[repr(v) for v in BAD_DELTAS])
def test_delta_must_lie_in_zero_to_one(value: Any) -> None:
    with pytest.raises(ValidationFailed):
        Delta(value)


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.5, 0.5), (5e-324, 5e-324)], ids=["int", "float", "subnormal"])
def test_epsilon_accepts_positive_numbers_as_floats(value: float, expected: float) -> None:
    epsilon = Epsilon(value)
    assert float(epsilon) == expected
    assert isinstance(epsilon.value, float)


def test_delta_zero_is_pure_dp() -> None:
    assert Budget.of(Epsilon(1.0), Delta(0.0)) == Budget.pure(Epsilon(1.0))


BAD_BUDGETS = [
    ("float-fields", {"epsilon": 1.0, "delta": Fraction(0)}),
    ("negative-epsilon", {"epsilon": Fraction(-1), "delta": Fraction(0)}),
    ("delta-one", {"epsilon": Fraction(1), "delta": Fraction(1)}),
    ("negative-delta", {"epsilon": Fraction(1), "delta": Fraction(-1, 10)}),
]


@pytest.mark.parametrize("fields", [f for _, f in BAD_BUDGETS], ids=[i for i, _ in BAD_BUDGETS])
def test_a_budget_is_validated(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        Budget(**fields)


def test_values_are_immutable() -> None:
    epsilon, total = Epsilon(1.0), budget(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        epsilon.value = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        total.epsilon = Fraction(2)  # type: ignore[misc]


# --- exact sequential composition ----------------------------------------------------------------


def test_decimal_spends_add_up_exactly() -> None:
    total = budget(0.3)
    spent = budget(0.1) + budget(0.1) + budget(0.1)  # 0.30000000000000004 in floats
    assert spent == total
    left = remaining(total, spent)
    assert left.exhausted
    assert not left.fits(budget(1e-12))
    with pytest.raises(BudgetExhausted):
        left - budget(1e-12)


def test_ten_tenths_make_one() -> None:
    spent = budget(0.1, 1e-7)
    for _ in range(9):
        spent = spent + budget(0.1, 1e-7)
    assert spent.record() == {"epsilon": "1", "delta": "1/1000000"}


@given(budgets, budgets, budgets)
def test_addition_is_associative_and_commutative(a: Budget, b: Budget, c: Budget) -> None:
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    floats = [x.as_floats() for x in (a, b, c)]
    eps, delta = ((a + b) + c).as_floats()
    assert math.isclose(eps, math.fsum(f[0] for f in floats), rel_tol=1e-12)
    assert math.isclose(delta, math.fsum(f[1] for f in floats), rel_tol=1e-12, abs_tol=1e-300)


@given(budgets, budgets)
def test_spending_then_refunding_is_exact(total: Budget, spend: Budget) -> None:
    assert (total + spend) - spend == total
    assert (total + spend).fits(spend)


@given(budgets, budgets)
def test_never_negative_exhausted_raises(total: Budget, spend: Budget) -> None:
    if total.fits(spend):
        left = total - spend
        assert left.epsilon >= 0
        assert left.delta >= 0
        assert left + spend == total
    else:
        with pytest.raises(BudgetExhausted):
            total - spend
        with pytest.raises(BudgetExhausted):
            remaining(total, spend)


@given(budgets, st.lists(budgets, max_size=8))
def test_a_sequence_of_spends_never_overdraws(total: Budget, spends: list[Budget]) -> None:
    spent = Budget(Fraction(0), Fraction(0))
    for spend in spends:
        left = remaining(total, spent)
        if left.fits(spend):
            spent = spent + spend
        else:
            with pytest.raises(BudgetExhausted):
                left - spend
    assert spent <= total


@given(budgets)
def test_a_record_round_trips(amount: Budget) -> None:
    assert Budget.from_record(amount.record()) == amount


@pytest.mark.parametrize(
    "record", [{}, {"epsilon": "x", "delta": "0"}, {"epsilon": "1/0", "delta": "0"}], ids=["empty", "text", "zero-denominator"]
)
def test_a_bad_record_is_refused(record: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed):
        Budget.from_record(record)


def test_a_spend_larger_in_epsilon_is_exhausted_with_details() -> None:
    with pytest.raises(BudgetExhausted) as caught:
        budget(1.0) - budget(1.5)
    assert caught.value.details == {"requested": {"epsilon": 1.5, "delta": 0.0}, "available": {"epsilon": 1.0, "delta": 0.0}}


def test_a_spend_larger_in_delta_alone_is_exhausted() -> None:
    with pytest.raises(BudgetExhausted):
        budget(1.0, 1e-6) - budget(0.5, 1e-5)


def test_deltas_adding_up_to_one_are_exhausted() -> None:
    with pytest.raises(BudgetExhausted):
        budget(1.0, 0.6) + budget(1.0, 0.5)


def test_budgets_are_partially_ordered() -> None:
    a, b = budget(1.0), budget(0.5, 1e-6)
    assert not a <= b
    assert not b <= a
    assert not a.fits(b)
    assert not b.fits(a)
    assert budget(0.5) < budget(1.0)
    assert budget(1.0) > budget(0.5)
    assert budget(1.0) >= budget(1.0)
    assert not budget(1.0) < budget(1.0)


# --- Epsilon and Delta arithmetic ----------------------------------------------------------------


def test_epsilons_add_as_decimals() -> None:
    assert Epsilon(0.1) + Epsilon(0.2) == Epsilon(0.3)
    assert Delta(1e-6) + Delta(2e-6) == Delta(3e-6)


@given(epsilons, st.integers(min_value=1, max_value=10_000))
def test_a_split_never_adds_up_to_more(epsilon: Epsilon, parts: int) -> None:
    share = epsilon.split(parts)
    assert Fraction(share.value) * parts <= Fraction(epsilon.value)
    assert math.isclose(share.value * parts, epsilon.value, rel_tol=1e-12)


@pytest.mark.parametrize("parts", [0, -1, 1.5, True], ids=["zero", "negative", "fraction", "bool"])
def test_a_split_needs_a_positive_whole_number(parts: Any) -> None:
    with pytest.raises(ValidationFailed):
        Epsilon(1.0).split(parts)


def test_epsilons_compare_by_value() -> None:
    assert Epsilon(0.5) < Epsilon(1.0)
    assert sorted([Epsilon(2.0), Epsilon(0.5)]) == [Epsilon(0.5), Epsilon(2.0)]


# --- a release's share of delta ------------------------------------------------------------------


@given(deltas, st.lists(st.floats(min_value=1e-3, max_value=10.0, allow_nan=False), min_size=1, max_size=20))
def test_delta_shares_of_releases_within_the_epsilon_total_stay_within_the_delta_total(delta: Delta, spends: list[float]) -> None:
    spent = sum((Epsilon(e).exact for e in spends), Fraction(0))
    value = float(spent)
    while Fraction(repr(value)) < spent:  # the grant's total covers the spends exactly, as the ledger ensures
        value = math.nextafter(value, math.inf)
    total = Epsilon(value)
    shares = [delta_share(delta, Epsilon(e), total) for e in spends]
    assert all(Fraction(s.value) <= delta.exact * Epsilon(e).exact / total.exact for s, e in zip(shares, spends, strict=True))
    assert sum((s.exact for s in shares), Fraction(0)) <= delta.exact


def test_delta_share_is_proportional_and_never_above_the_total() -> None:
    assert delta_share(Delta(1e-6), Epsilon(0.5), Epsilon(1.0)) == Delta(5e-7)
    assert delta_share(Delta(1e-6), Epsilon(3.0), Epsilon(1.0)) == Delta(1e-6)
    assert delta_share(Delta(0.0), Epsilon(0.5), Epsilon(1.0)) == Delta(0.0)
    with pytest.raises(TypeError):
        delta_share(1e-6, Epsilon(0.5), Epsilon(1.0))  # type: ignore[arg-type]
