"""Disclosure rules, one parametrised table of cases per rule; worst() and the registry as properties."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import output_control
from policies.evidence import CellEvidence
from policies.model import Aggregate, Disclosure
from policies.rules import RULES, CellStatus, Verdict, rule, worst

PASS, SUPPRESS, REVIEW, BLOCK = CellStatus.PASS, CellStatus.SUPPRESS, CellStatus.REVIEW, CellStatus.BLOCK
DEFAULTS = Disclosure()  # ACRO's: k=10, n=2, k=0.9, p=0.1, zeros disclosive, missing not checked


def cell(**overrides: Any) -> CellEvidence:
    """A count cell with 20 units behind it unless told otherwise."""
    fields: dict[str, Any] = {"aggregate": Aggregate.COUNT, "value": 20, "units": 20}
    return CellEvidence(**(fields | overrides))


def magnitude(top: tuple[float, ...], total: float | None, units: int = 20, **overrides: Any) -> CellEvidence:
    return cell(**({"aggregate": Aggregate.SUM, "value": total, "units": units, "top": top, "total": total} | overrides))


def check(name: str, evidence: CellEvidence, settings: Disclosure = DEFAULTS) -> Verdict:
    verdict = RULES[name](evidence, settings)
    assert verdict.rule == name
    return verdict


THRESHOLD = [
    pytest.param(cell(units=9), SUPPRESS, id="nine_units_fail"),
    pytest.param(cell(units=10), PASS, id="ten_units_pass_strict_less_than"),
    pytest.param(cell(units=0), SUPPRESS, id="no_units_fail"),
    pytest.param(cell(aggregate=Aggregate.MEDIAN, units=3), SUPPRESS, id="every_aggregate"),
]


@pytest.mark.parametrize(("evidence", "expected"), THRESHOLD)
def test_threshold(evidence: CellEvidence, expected: CellStatus) -> None:
    verdict = check("threshold", evidence)
    assert verdict.status is expected
    assert verdict.evidence == {"units": evidence.units, "threshold": 10}


ZEROS = [
    pytest.param(cell(value=0, units=0), DEFAULTS, SUPPRESS, id="empty_count_cell"),
    pytest.param(cell(value=None, units=0, aggregate=Aggregate.AVG), DEFAULTS, SUPPRESS, id="empty_mean_cell"),
    pytest.param(magnitude((0.0, 0.0), 0.0), DEFAULTS, SUPPRESS, id="zero_sum_over_units_as_acro_redacts"),
    pytest.param(cell(value=Decimal("0.00"), aggregate=Aggregate.SUM), DEFAULTS, SUPPRESS, id="decimal_zero"),
    pytest.param(cell(value=0.0, aggregate=Aggregate.MIN), DEFAULTS, SUPPRESS, id="zero_minimum"),
    pytest.param(cell(value=3), DEFAULTS, PASS, id="non_zero"),
    pytest.param(cell(value=0, units=0), Disclosure(zeros_disclosive=False), PASS, id="zeros_not_disclosive"),
]


@pytest.mark.parametrize(("evidence", "settings", "expected"), ZEROS)
def test_zeros(evidence: CellEvidence, settings: Disclosure, expected: CellStatus) -> None:
    assert check("zeros", evidence, settings).status is expected


NK = [
    pytest.param(cell(), PASS, id="count_not_applicable"),
    pytest.param(magnitude((45.0, 45.0, *[1.0] * 10), 100.0), SUPPRESS, id="share_equal_to_k_fails_as_acro"),
    pytest.param(magnitude((45.0, 44.0, *[1.0] * 11), 100.0), PASS, id="share_below_k"),
    pytest.param(magnitude((1.0, 50.0, 45.0), 100.0, units=3), SUPPRESS, id="unsorted_top_is_sorted"),
    pytest.param(magnitude((100.0,), 100.0, units=1), SUPPRESS, id="single_contributor_share_one"),
    pytest.param(magnitude((0.0, 0.0), 0.0), PASS, id="all_zero_total_is_nan_as_acro"),
    pytest.param(magnitude((), 0.0, units=0), PASS, id="empty_cell"),
    pytest.param(magnitude((90.0, 5.0), 100.0, negative=1), REVIEW, id="negative_values_review"),
    pytest.param(magnitude((), None), PASS, id="no_evidence_not_applicable"),
    pytest.param(magnitude((90.0, 5.0), None), SUPPRESS, id="top_without_total_incomplete"),
    pytest.param(magnitude((50.0,), 100.0, units=5), SUPPRESS, id="fewer_top_values_than_n_incomplete"),
    pytest.param(magnitude((), 100.0), SUPPRESS, id="total_without_top_incomplete"),
    pytest.param(magnitude((95.0, 1.0), -4.0), SUPPRESS, id="negative_total_without_negatives_contradicts"),
    pytest.param(cell(aggregate=Aggregate.AVG, value=5.0, top=(99.0, 0.5), total=100.0), SUPPRESS, id="mean_uses_the_total"),
]


@pytest.mark.parametrize(("evidence", "expected"), NK)
def test_nk_dominance(evidence: CellEvidence, expected: CellStatus) -> None:
    assert check("nk_dominance", evidence).status is expected


def test_nk_dominance_uses_the_policy_n_and_k() -> None:
    evidence = magnitude((40.0, 30.0, 20.0, *[1.0] * 10), 100.0)
    assert check("nk_dominance", evidence).status is PASS  # top 2: 0.70
    verdict = check("nk_dominance", evidence, Disclosure(nk_n=3, nk_k=0.9))
    assert verdict.status is SUPPRESS  # top 3: 0.90
    assert verdict.evidence == {"n": 3, "k": 0.9, "share": 0.9}


P_RATIO = [
    pytest.param(cell(), PASS, id="count_not_applicable"),
    pytest.param(magnitude((100.0, 50.0, *[1.0] * 10), 160.0), PASS, id="ratio_equal_to_p_passes_strict_less_than"),
    pytest.param(magnitude((100.0, 50.0, *[1.0] * 9), 159.0), SUPPRESS, id="ratio_below_p"),
    pytest.param(magnitude((100.0,), 100.0, units=1), SUPPRESS, id="single_contributor_ratio_zero"),
    pytest.param(magnitude((0.0, 0.0), 0.0), SUPPRESS, id="all_zero_fails_as_acro_arithmetic"),
    pytest.param(magnitude((), 0.0, units=0), PASS, id="empty_cell_nan_passes"),
    pytest.param(magnitude((10.0, 9.0, 8.0), 100.0, negative=2), REVIEW, id="negative_values_review"),
    pytest.param(magnitude((), None), PASS, id="no_evidence_not_applicable"),
    pytest.param(magnitude((100.0,), 150.0, units=4), SUPPRESS, id="one_top_value_for_many_units_incomplete"),
]


@pytest.mark.parametrize(("evidence", "expected"), P_RATIO)
def test_p_ratio(evidence: CellEvidence, expected: CellStatus) -> None:
    assert check("p_ratio", evidence).status is expected


ORDER = [
    pytest.param(cell(aggregate=Aggregate.MIN, below=1, above=50), SUPPRESS, id="minimum_of_one_unit"),
    pytest.param(cell(aggregate=Aggregate.MIN, below=12, above=50), PASS, id="minimum_shared_by_k_units"),
    pytest.param(cell(aggregate=Aggregate.MEDIAN, below=10, above=10), PASS, id="median_k_each_side"),
    pytest.param(cell(aggregate=Aggregate.QUANTILE, below=40, above=9), SUPPRESS, id="quantile_short_above"),
    pytest.param(cell(aggregate=Aggregate.MAX, below=50, above=None), SUPPRESS, id="unknown_above_never_passes"),
    pytest.param(cell(aggregate=Aggregate.MEDIAN), SUPPRESS, id="no_evidence_never_passes"),
    pytest.param(cell(below=1, above=1), PASS, id="count_not_applicable"),
]


@pytest.mark.parametrize(("evidence", "expected"), ORDER)
def test_order_statistic(evidence: CellEvidence, expected: CellStatus) -> None:
    assert check("order_statistic", evidence).status is expected


def test_order_statistic_says_why() -> None:
    verdict = check("order_statistic", cell(aggregate=Aggregate.MAX, below=30, above=2))
    assert verdict.reason == "a minimum/maximum/quantile must have at least k units on each side"
    assert verdict.evidence == {"below": 30, "above": 2, "threshold": 10}


FLAGS = [
    pytest.param("negative", cell(negative=1), DEFAULTS, REVIEW, id="negative_unit_total"),
    pytest.param("negative", cell(negative=0), DEFAULTS, PASS, id="no_negative"),
    pytest.param("missing", cell(missing=3), Disclosure(check_missing=True), REVIEW, id="missing_checked"),
    pytest.param("missing", cell(missing=0), Disclosure(check_missing=True), PASS, id="none_missing"),
    pytest.param("missing", cell(missing=3), DEFAULTS, PASS, id="missing_not_checked_by_default"),
]


@pytest.mark.parametrize(("name", "evidence", "settings", "expected"), FLAGS)
def test_review_flags(name: str, evidence: CellEvidence, settings: Disclosure, expected: CellStatus) -> None:
    assert check(name, evidence, settings).status is expected


# A cell whose raw numbers are easy to spot: none of them may appear in any rule's evidence.
RAW = magnitude((7777.0, 555.0, 33.0), 8365.0, units=3, missing=2, below=1, above=1)


@pytest.mark.parametrize("name", list(RULES))
def test_evidence_holds_counts_and_shares_never_raw_values(name: str) -> None:
    for evidence in (RAW, replace(RAW, aggregate=Aggregate.MAX, value=7777.0)):
        verdict = check(name, evidence, Disclosure(check_missing=True))
        assert all(isinstance(v, int | float | bool) for v in verdict.evidence.values())
        assert not {7777.0, 555.0, 33.0, 8365.0} & set(verdict.evidence.values())


def test_registry_order_and_names() -> None:
    assert list(RULES) == ["threshold", "values_threshold", "zeros", "nk_dominance", "p_ratio", "order_statistic", "negative", "missing"]
    assert output_control.RULES is RULES
    assert output_control.CellStatus is CellStatus


def test_a_second_rule_of_the_same_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        rule("threshold")(RULES["threshold"])


STATUSES = st.sampled_from(list(CellStatus))


@given(st.lists(STATUSES, min_size=1, max_size=8), STATUSES)
def test_worst_is_monotone(statuses: list[CellStatus], extra: CellStatus) -> None:
    """Adding a verdict never makes a checked cell better (the empty set is the review case below)."""
    before = worst(statuses)
    after = worst([*statuses, extra])
    assert after.severity >= before.severity
    assert after.severity >= extra.severity
    assert all(worst(statuses).severity >= s.severity for s in statuses)


@given(st.lists(STATUSES, max_size=8))
def test_worst_passes_only_a_non_empty_all_pass(statuses: list[CellStatus]) -> None:
    assert (worst(statuses) is PASS) == (bool(statuses) and all(s is PASS for s in statuses))


def test_worst_of_nothing_is_review() -> None:
    assert worst([]) is REVIEW
    assert worst(iter(())) is REVIEW
    assert worst([PASS, BLOCK, REVIEW]) is BLOCK


VALUES_CASES = {
    "no-missing": (CellEvidence(Aggregate.AVG, 5.0, units=59, missing=0), CellStatus.PASS),
    "five-with-a-value": (CellEvidence(Aggregate.AVG, 5.0, units=59, missing=54), CellStatus.SUPPRESS),
    "ten-with-a-value": (CellEvidence(Aggregate.SUM, 5.0, units=59, missing=49), CellStatus.PASS),
    "more-missing-rows-than-units": (CellEvidence(Aggregate.SUM, 5.0, units=3, missing=8), CellStatus.SUPPRESS),
}


@pytest.mark.parametrize(("cell", "status"), VALUES_CASES.values(), ids=VALUES_CASES.keys())
def test_values_threshold_counts_units_with_a_value(cell: CellEvidence, status: CellStatus) -> None:
    assert RULES["values_threshold"](cell, Disclosure()).status is status
