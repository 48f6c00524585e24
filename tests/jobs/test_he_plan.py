"""Planning he jobs: the aggregate op's spec and policy checks, and the dispatcher on ``op``."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import PolicyViolation, ValidationFailed
from core.schema import DatasetSchema
from jobs import he
from jobs.he import AggregatePlan
from policies.model import Aggregate, Policy

KEY = "a" * 64
OTHER_KEY = "b" * 64

SCHEMA = DatasetSchema.model_validate(
    {
        "privacy_unit": "pid",
        "columns": {
            "pid": {"role": "identifier", "type": "int"},
            "race": {"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3]},
            "sex": {"role": "quasi_identifier", "type": "int", "domain": [0, 1]},
            "age": {"role": "quasi_identifier", "type": "int", "bounds": [0, 100]},
            "income": {"role": "sensitive", "type": "paillier", "paillier": {"key": KEY, "scale": 0}},
            "tax": {"role": "sensitive", "type": "paillier", "paillier": {"key": KEY, "scale": 2}},
            "debt": {"role": "sensitive", "type": "paillier", "paillier": {"key": OTHER_KEY, "scale": 0}},
            "hidden": {"role": "sensitive", "type": "paillier", "paillier": {"key": KEY, "scale": 0}},
        },
    }
)
USES = {"race": "dimension", "sex": "dimension", "age": "measure", "income": "measure", "tax": "measure", "debt": "measure"}
POLICY: dict[str, Any] = {
    "columns": {"pums_he": USES},
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["he"],
}


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "op": "aggregate",
        "dataset": "pums_he",
        "group_by": ["race"],
        "aggregates": [{"fn": "count", "name": "n"}, {"fn": "avg", "column": "income", "name": "mean_income"}],
    }
    return base | changes


def plan(raw: dict[str, Any], policy: dict[str, Any] | None = None) -> he.HEPlan:
    return he.plan(raw, Policy.model_validate(policy or POLICY), {"pums_he": SCHEMA})


def test_a_valid_aggregate_plans() -> None:
    aggregates = [{"fn": "sum", "column": "tax", "name": "t"}, {"fn": "avg", "column": "income", "name": "m"}]
    found = plan(spec(group_by=["race", "sex"], aggregates=aggregates))
    assert isinstance(found, AggregatePlan)
    assert found.datasets == ("pums_he",)
    assert found.group_by == ("race", "sex")
    assert found.key == KEY
    assert found.scales == (("tax", 2), ("income", 0))
    assert [o.aggregate for o in found.outputs] == [Aggregate.SUM, Aggregate.AVG]
    assert found.privacy_unit == "pid"


def test_no_group_by_is_one_cell() -> None:
    found = plan(spec(group_by=[]))
    assert isinstance(found, AggregatePlan)
    assert found.group_by == ()


TWO_KEYS = [{"fn": "sum", "column": "income", "name": "a"}, {"fn": "sum", "column": "debt", "name": "b"}]
REFUSED = [
    ("group_by_encrypted", spec(group_by=["income"]), "measure_as_dimension"),
    ("group_by_measure", spec(group_by=["age"]), "measure_as_dimension"),
    ("group_by_identifier", spec(group_by=["pid"]), "identifier"),
    ("plain_column_summed", spec(aggregates=[{"fn": "sum", "column": "age", "name": "s"}]), "not_encrypted"),
    ("denied_column", spec(aggregates=[{"fn": "sum", "column": "hidden", "name": "s"}]), "column_denied"),
    ("two_keys", spec(aggregates=TWO_KEYS), "keys_differ"),
    ("other_dataset", spec(dataset="other"), "dataset_not_granted"),
]


@pytest.mark.parametrize(("raw", "rule"), [pytest.param(r, rule, id=i) for i, r, rule in REFUSED])
def test_policy_refusals_name_the_rule(raw: dict[str, Any], rule: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan(raw)
    assert refused.value.details["rule"] == rule


def test_an_aggregate_outside_the_policy_is_refused() -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan(spec(), {**POLICY, "aggregates": ["count", "sum"]})
    assert refused.value.details["rule"] == "aggregate_not_allowed"


def test_a_dp_grant_has_no_he_aggregates() -> None:
    dp = {"epsilon_total": 1.0, "epsilon_per_job": 0.5, "delta_total": 0.0, "max_rows_per_unit": 1}
    with pytest.raises(PolicyViolation) as refused:
        plan(spec(), {**POLICY, "dp": dp})
    assert refused.value.details["rule"] == "dp_unsupported"


BAD = [
    ("unknown_op", {"op": "median"}),
    ("no_op", {"dataset": "pums_he"}),
    ("sum_without_column", spec(aggregates=[{"fn": "sum", "name": "s"}])),
    ("unknown_fn", spec(aggregates=[{"fn": "max", "column": "income", "name": "s"}])),
    ("name_clash", spec(aggregates=[{"fn": "sum", "column": "income", "name": "race"}])),
    ("counts_only", spec(aggregates=[{"fn": "count", "name": "n"}])),
    ("unknown_column", spec(aggregates=[{"fn": "sum", "column": "nope", "name": "s"}])),
    ("extra_field", spec(having="n > 3")),
    ("repeated_group", spec(group_by=["race", "race"])),
]


@pytest.mark.parametrize("raw", [pytest.param(r, id=i) for i, r in BAD])
def test_malformed_specs_are_bad_input(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        plan(raw)


def test_a_new_op_registers_its_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = he.HEPlan(op="rank", dataset="pums_he")
    monkeypatch.setitem(he.PLANNERS, "rank", lambda raw, policy, schemas, unique: sentinel)
    assert plan({"op": "rank"}) is sentinel
