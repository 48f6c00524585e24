"""DP tables beyond declared domains: key selection by noisy threshold, and COUNT(DISTINCT <privacy unit>).

Noisy values are never compared exactly: each assertion holds unless the noise exceeds many times
its scale, which happens with negligible probability.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from core.errors import InternalError, PolicyViolation
from core.schema import DatasetSchema
from jobs.dp.answer import answer
from jobs.dp.plan import UNITS, DPPlan
from jobs.engine import DuckDBEngine
from jobs.query import validate
from jobs.query.dp import plan_dp
from policies import dp
from policies.budget import Delta, Epsilon
from policies.model import Aggregate, Policy
from tests.jobs.conftest import frames_to_tables, read_pums

BY_AGE = "SELECT age, COUNT(*) AS n FROM pums GROUP BY age"


def dp_plan(sql: str, policy: Policy, schemas: dict[str, DatasetSchema], max_rows: int = 1, *, key_selection: bool = False) -> DPPlan:
    return plan_dp(validate(sql, policy, schemas), schemas, max_rows, key_selection=key_selection)


def test_a_key_without_domain_needs_a_delta(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    with pytest.raises(PolicyViolation) as refused:
        dp_plan(BY_AGE, policy, schemas)
    assert refused.value.details == {"rule": "dp_unsupported", "column": "age"}
    assert "a declared domain or a delta is needed" in str(refused.value)
    assert dp_plan(BY_AGE, policy, schemas, key_selection=True).selects_keys


def test_key_selection_releases_common_keys_and_withholds_rare_ones(
    policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    plan = dp_plan(BY_AGE, policy, schemas, key_selection=True)
    noisy = answer(plan, DuckDBEngine().run(plan.sql, tables), Epsilon(4.0), 1, Delta(1e-9))
    counts = read_pums("PUMS_pid.csv").age.value_counts()
    selection = noisy.selection
    assert selection is not None
    # ε = 4 over one count and the selection: 2 each, Laplace scale 0.5, threshold 11 at δ = 1e-9
    assert selection.epsilon == Epsilon(2.0)
    assert (selection.scale, selection.threshold, selection.delta) == (0.5, 11, Delta(1e-9))
    released = noisy.table.column("age").to_pylist()
    assert released == sorted(released)
    assert selection.released == len(released)
    assert set(counts[counts >= 20].index) <= set(released)  # 18 scales above the threshold
    assert not set(counts[counts <= 2].index) & set(released)  # 18 scales below it
    assert noisy.epsilon_each == Epsilon(2.0)
    for age, n, error in zip(released, noisy.table.column("n").to_pylist(), noisy.errors["n"], strict=True):
        assert abs(n - counts[age]) <= 5 * error.bound95


def test_selection_crosses_declared_domains(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = dp_plan("SELECT sex, age, COUNT(*) AS n FROM pums GROUP BY sex, age", policy, schemas, key_selection=True)
    noisy = answer(plan, DuckDBEngine().run(plan.sql, tables), Epsilon(4.0), 1, Delta(1e-6))
    rows = noisy.table.to_pylist()
    ages = sorted({row["age"] for row in rows})
    assert [(row["sex"], row["age"]) for row in rows] == [(sex, age) for sex in (0, 1) for age in ages]


def test_a_plan_that_selects_keys_does_not_run_without_delta(
    policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    plan = dp_plan(BY_AGE, policy, schemas, key_selection=True)
    with pytest.raises(InternalError):
        answer(plan, DuckDBEngine().run(plan.sql, tables), Epsilon(1.0), 1)


def test_count_distinct_units_counts_persons_not_rows(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    dup = read_pums("PUMS_dup.csv")
    sql = "SELECT race, COUNT(DISTINCT pid) AS persons, COUNT(*) AS n FROM pums GROUP BY race"
    plan = dp_plan(sql, policy, schemas, max_rows=4)
    assert [a.aggregate for a in plan.aggregates] == [Aggregate.COUNT_DISTINCT, Aggregate.COUNT]
    exact = DuckDBEngine().run(plan.sql, frames_to_tables(dup))
    per_race = {row["__dp_key_0"]: row[UNITS] for row in exact.to_pylist()}
    assert per_race == dup.groupby("race").pid.nunique().to_dict()


def test_count_distinct_sensitivity_is_at_most_the_cells_a_unit_reaches(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """One cell: a unit moves the count of units by at most 1, however many rows it keeps."""
    tables = frames_to_tables(read_pums("PUMS_dup.csv"))
    whole = dp_plan("SELECT COUNT(DISTINCT pid) AS persons, COUNT(*) AS n FROM pums", policy, schemas, max_rows=4)
    noisy = answer(whole, DuckDBEngine().run(whole.sql, tables), Epsilon(1.0), 4)
    each = Epsilon(1.0).split(2)
    assert noisy.errors["persons"][0].scale == dp.counts_mechanism(each, 1).scale
    assert noisy.errors["n"][0].scale == dp.counts_mechanism(each, 4).scale
    by_sex = dp_plan("SELECT sex, COUNT(DISTINCT pid) AS persons FROM pums GROUP BY sex", policy, schemas, max_rows=4)
    two_cells = answer(by_sex, DuckDBEngine().run(by_sex.sql, tables), Epsilon(1.0), 4)
    assert two_cells.errors["persons"][0].scale == dp.counts_mechanism(Epsilon(1.0), 2).scale


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT race, COUNT(DISTINCT educ) AS n FROM pums GROUP BY race", id="distinct_of_another_column"),
        pytest.param("SELECT COUNT(DISTINCT pid + 1) AS n FROM pums", id="distinct_of_an_expression"),
    ],
)
def test_only_the_privacy_unit_is_counted_distinct(policy: Policy, schemas: dict[str, DatasetSchema], sql: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        dp_plan(sql, policy, schemas)
    assert refused.value.details["rule"] in {"dp_unsupported", "join_key_only_in_join", "column_denied"}
