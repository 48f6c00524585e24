"""The DP form of statistics specs: which ops have one, their keys and aggregates, and their laid-out answers.

Noisy values are only compared with the truth within several times their 95% bound.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from core.errors import PolicyViolation
from jobs.dp.answer import answer
from jobs.stats.dp import DPStats, plan_dp, shape
from policies.budget import Epsilon
from policies.model import Aggregate
from tests.jobs.conftest import SCHEMAS
from tests.jobs.stats.conftest import ENGINE, as_tables, stats_policy

POLICY = stats_policy(income="measure")


def dp_form(spec: dict[str, Any], max_rows: int = 1) -> DPStats:
    return plan_dp({"dataset": "pums", **spec}, POLICY, SCHEMAS, max_rows)


def test_histogram_bins_come_from_the_declared_bounds(pums: pd.DataFrame) -> None:
    form = dp_form({"op": "histogram", "column": "age", "bins": 10})
    assert form.edges == tuple(float(edge) for edge in range(0, 101, 10))
    assert form.plan.keys[0].domain == tuple(range(10))
    noisy = shape(form, answer(form.plan, ENGINE.run(form.plan.sql, as_tables(pums)), Epsilon(1.0), 1))
    assert noisy.table.column_names == ["lower", "upper", "count"]
    assert noisy.table.column("lower").to_pylist() == [float(edge) for edge in range(0, 100, 10)]  # [0, 10) is empty, released all the same
    truth = pd.cut(pums.age, list(range(0, 101, 10)), right=False).value_counts(sort=False).tolist()
    for count, exact, error in zip(noisy.table.column("count").to_pylist(), truth, noisy.errors["count"], strict=True):
        assert abs(count - exact) <= 5 * error.bound95


def test_histogram_on_given_edges_counts_the_last_edge_in_the_last_bin() -> None:
    frame = pd.DataFrame({"age": [10, 20, 20, 20], "pid": [1, 2, 3, 4]})
    form = dp_form({"op": "histogram", "column": "age", "bins": [0, 10, 20]})
    exact = ENGINE.run(form.plan.sql, as_tables(frame))
    assert {row["__dp_key_0"]: row["__dp_count"] for row in exact.to_pylist()} == {1: 4}


def test_crosstab_keys_come_from_the_declared_domains() -> None:
    form = dp_form({"op": "crosstab", "index": ["sex"], "columns": ["race"], "values": "income", "aggfunc": ["count", "mean"]})
    assert [(k.name, k.domain) for k in form.plan.keys] == [("sex", (0, 1)), ("race", (1, 2, 3, 4, 5, 6))]
    assert [(a.name, a.aggregate, a.measure) for a in form.plan.aggregates] == [
        ("count_income", Aggregate.COUNT, "income"),
        ("mean_income", Aggregate.AVG, "income"),
    ]
    assert not form.plan.selects_keys


def test_margins_are_omitted() -> None:
    assert dp_form({"op": "crosstab", "index": ["sex"], "margins": True}).margins_omitted
    assert not dp_form({"op": "crosstab", "index": ["sex"]}).margins_omitted


def test_describe_is_laid_out_one_row_per_column(pums: pd.DataFrame) -> None:
    form = dp_form({"op": "describe", "columns": ["income"], "statistics": ["count", "mean", "50%"]})
    assert len(form.plan.aggregates) == 3  # one share of epsilon each
    noisy = shape(form, answer(form.plan, ENGINE.run(form.plan.sql, as_tables(pums)), Epsilon(1.0), 1))
    assert noisy.table.column_names == ["variable", "count", "mean", "50%"]
    row = noisy.table.to_pylist()[0]
    assert row["variable"] == "income"
    assert abs(row["count"] - len(pums)) <= 5 * noisy.errors["count"][0].bound95
    assert 0 <= row["50%"] <= 500_000


def test_a_dimension_without_domain_needs_a_delta() -> None:
    spec = {"dataset": "pums", "op": "crosstab", "index": ["age"]}
    with pytest.raises(PolicyViolation) as refused:
        plan_dp(spec, POLICY, SCHEMAS, 1)
    assert refused.value.details == {"rule": "dp_unsupported", "column": "pums.age"}
    assert plan_dp(spec, POLICY, SCHEMAS, 1, key_selection=True).plan.selects_keys


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"op": "ols", "formula": "income ~ age"}, id="ols"),
        pytest.param({"op": "logit", "formula": "sex ~ age"}, id="logit"),
        pytest.param({"op": "correlation", "columns": ["income", "age"]}, id="correlation"),
        pytest.param({"op": "describe", "columns": ["income"]}, id="describe_with_min_and_max"),
        pytest.param({"op": "crosstab", "index": ["sex"], "values": "income", "aggfunc": ["std"]}, id="crosstab_std"),
        pytest.param({"op": "pivot", "index": ["sex"], "values": ["income"], "aggfunc": ["max"]}, id="pivot_max"),
        pytest.param({"op": "quantiles", "column": "married", "q": [0.5]}, id="quantile_of_an_unbounded_column"),
    ],
)
def test_ops_without_a_dp_form_are_refused(spec: dict[str, Any]) -> None:
    policy = stats_policy(income="measure", age="measure", married="measure")
    with pytest.raises(PolicyViolation) as refused:
        plan_dp({"dataset": "pums", **spec}, policy, SCHEMAS, 1)
    assert refused.value.details["rule"] == "dp_unsupported"


def test_the_policy_checks_of_every_stats_job_still_apply() -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan_dp({"dataset": "pums", "op": "crosstab", "index": ["income"]}, POLICY, SCHEMAS, 1)
    assert refused.value.details["rule"] == "measure_as_dimension"
