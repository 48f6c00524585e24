"""Linked cells: a count, a sum and a mean of one population in one row are withheld together."""

from __future__ import annotations

import pyarrow as pa
import pytest

from policies.evidence import Output
from policies.linked import RULE, link, pairs
from policies.model import Aggregate, Disclosure
from policies.output_control import control
from policies.rules import CellStatus, Verdict

OUTPUTS = [Output("n", Aggregate.COUNT), Output("s", Aggregate.SUM, "income"), Output("a", Aggregate.AVG, "income")]
PASS = Verdict(CellStatus.PASS, "threshold", "ok")
SUPPRESS = Verdict(CellStatus.SUPPRESS, "nk_dominance", "dominated")
REVIEW = Verdict(CellStatus.REVIEW, "negative", "negative values")


def statuses(row: dict[str, Verdict]) -> dict[str, CellStatus]:
    return {name: verdict.status for name, verdict in row.items()}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"n": SUPPRESS, "s": PASS, "a": PASS}, {"n": "suppress", "s": "pass", "a": "suppress"}),  # count = sum / mean
        ({"n": PASS, "s": SUPPRESS, "a": PASS}, {"n": "pass", "s": "suppress", "a": "suppress"}),  # sum = mean x count
        ({"n": PASS, "s": PASS, "a": SUPPRESS}, {"n": "pass", "s": "suppress", "a": "suppress"}),  # mean = sum / count
        ({"n": REVIEW, "s": PASS, "a": PASS}, {"n": "review", "s": "pass", "a": "review"}),  # a review may withhold the count
        ({"n": PASS, "s": PASS, "a": PASS}, {"n": "pass", "s": "pass", "a": "pass"}),
        ({"n": SUPPRESS, "s": SUPPRESS, "a": PASS}, {"n": "suppress", "s": "suppress", "a": "pass"}),  # one of three: nothing to solve
    ],
    ids=["count_withheld", "sum_withheld", "mean_withheld", "count_in_review", "all_pass", "two_withheld"],
)
def test_no_two_of_three_beside_a_withheld_one(given: dict[str, Verdict], expected: dict[str, str]) -> None:
    (row,) = link([given], OUTPUTS)
    assert {name: status.value for name, status in statuses(row).items()} == expected
    for name in row:
        if row[name] is not given[name]:
            assert row[name].rule == RULE


def test_a_sum_and_a_mean_of_different_arguments_are_not_a_pair() -> None:
    outputs = [Output("n", Aggregate.COUNT), Output("s", Aggregate.SUM, "income"), Output("a", Aggregate.AVG, "age")]
    assert pairs(outputs) == []
    (row,) = link([{"n": SUPPRESS, "s": PASS, "a": PASS}], outputs)
    assert statuses(row) == {"n": CellStatus.SUPPRESS, "s": CellStatus.PASS, "a": CellStatus.PASS}


def test_output_control_withholds_the_mean_beside_a_withheld_count() -> None:
    """Through ``control``: a threshold rule that fails only the count (the others are not checked here)."""
    table = pa.table({"g": [1, 2], "n": [3, 40], "s": [300.0, 4000.0], "a": [100.0, 100.0], "__units_0": [3, 40]})
    controlled = control(table, OUTPUTS[:1], ["__units_0"], Disclosure(), rules=["threshold"])
    assert controlled.released.column("n").to_pylist() == [None, 40]
    linked = control(table, OUTPUTS, ["__units_0"], Disclosure(), rules=["zeros"])
    assert linked.released.column("a").to_pylist() == [100.0, 100.0]  # nothing withheld: nothing linked
    both = control(
        pa.table({"g": [1], "n": [0], "s": [300.0], "a": [100.0], "__units_0": [3]}), OUTPUTS, ["__units_0"], Disclosure(), rules=["zeros"]
    )
    assert both.released.to_pylist() == [{"g": 1, "n": None, "s": 300.0, "a": None}]
    assert {(n.column, n.rule) for n in both.notes} == {("n", "zeros"), ("a", RULE)}
