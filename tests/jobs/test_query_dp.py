"""The DP form of a query: supported shapes, the per-unit row cap, clamping, and cells over whole domains."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from core.errors import PolicyViolation
from core.schema import DatasetSchema
from jobs.engine import DuckDBEngine
from jobs.query import validate
from jobs.query.dp import COUNT, answer, plan_dp
from policies import dp
from policies.budget import Epsilon
from policies.model import Policy
from tests.jobs.conftest import frames_to_tables, read_pums


def exact_cells(sql: str, policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table], max_rows: int) -> pa.Table:
    plan = plan_dp(validate(sql, policy, schemas), schemas, max_rows)
    return DuckDBEngine().run(plan.sql, tables)


def test_each_unit_keeps_at_most_max_rows_rows(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    dup = read_pums("PUMS_dup.csv")
    tables = frames_to_tables(dup)
    for max_rows in (1, 2):
        cells = exact_cells("SELECT COUNT(*) AS n FROM pums", policy, schemas, tables, max_rows)
        expected = int(dup.groupby("pid").size().clip(upper=max_rows).sum())
        assert cells.column(COUNT).to_pylist() == [expected]


def test_measures_are_clamped_to_their_bounds(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    pums = read_pums("PUMS_pid.csv").head(3).assign(income=[900_000, -5, 10])
    cells = exact_cells("SELECT SUM(income) AS total FROM pums", policy, schemas, frames_to_tables(pums), 1)
    assert cells.column("__dp_sum_income").to_pylist() == [500_000 + 0 + 10]


def test_the_where_clause_is_kept(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    cells = exact_cells("SELECT COUNT(*) AS n FROM pums WHERE race = 6", policy, schemas, tables, 1)
    assert cells.column(COUNT).to_pylist() == [int((read_pums("PUMS_pid.csv").race == 6).sum())]


def test_cells_cover_the_whole_domain(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = plan_dp(validate("SELECT educ, sex, COUNT(*) AS n FROM pums WHERE race = 6 GROUP BY educ, sex", policy, schemas), schemas, 1)
    noisy = answer(plan, DuckDBEngine().run(plan.sql, tables), Epsilon(1.0), 1)
    assert noisy.table.num_rows == 16 * 2
    assert noisy.table.column_names == ["educ", "sex", "n"]
    assert noisy.epsilon_each == Epsilon(1.0)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT pums.race, COUNT(*) AS n FROM pums JOIN tax ON pums.pid = tax.pid GROUP BY pums.race", id="join"),
        pytest.param("SELECT age, COUNT(*) AS n FROM pums GROUP BY age", id="no_domain"),
    ],
)
def test_unsupported_shapes_name_the_rule(policy: Policy, schemas: dict[str, DatasetSchema], sql: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan_dp(validate(sql, policy, schemas), schemas, 1)
    assert refused.value.details["rule"] == "dp_unsupported"


def test_a_quantile_lists_each_cells_clamped_values(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    pums = read_pums("PUMS_pid.csv").head(4).assign(income=[900_000, -5, 10, 20], sex=[0, 0, 0, 1])
    cells = exact_cells("SELECT sex, MEDIAN(income) AS m FROM pums GROUP BY sex", policy, schemas, frames_to_tables(pums), 1)
    listed = {row["__dp_key_0"]: sorted(row["__dp_values_income"]) for row in cells.to_pylist()}
    assert listed == {0: [0.0, 10.0, 500_000.0], 1: [20.0]}
    assert cells.schema.field("__dp_values_income").type.value_type == pa.float64()  # one float64 buffer for the answer
    assert "__dp_sum_income" not in cells.column_names  # only a quantile reads income: nothing is summed


def test_a_quantile_reads_its_values_from_chunked_lists_with_nulls(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """The answer reads each cell's list from the engine's buffers: chunks, NULL values and a NULL list (no values)."""
    plan = plan_dp(validate("SELECT sex, MEDIAN(income) AS m FROM pums GROUP BY sex", policy, schemas), schemas, 1)
    candidate = float(np.linspace(0.0, 500_000.0, dp.QUANTILE_CANDIDATES)[400])
    values = pa.chunked_array(
        [pa.array([None, [candidate] * 100], pa.list_(pa.float64())), pa.array([[candidate, None] * 100], pa.list_(pa.float64()))]
    )
    cells = pa.table({"__dp_key_0": [1, 2, 0], "__dp_count": [0, 100, 200], "__dp_values_income": values})
    noisy = answer(plan, cells, Epsilon(1000.0), 1)  # a score gap of 100 rows at scale 0.002: the candidate itself
    assert noisy.table.column("m").to_pylist()[0] == candidate  # sex 0: the cell of the second chunk
    assert 0 <= noisy.table.column("m").to_pylist()[1] <= 500_000  # sex 1: no values, a candidate all the same


def test_a_null_measure_is_not_clamped_into_the_bounds(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    pums = read_pums("PUMS_pid.csv").head(3).astype({"income": "Int64"}).assign(income=[None, 7, 9])
    cells = exact_cells("SELECT MEDIAN(income) AS m, SUM(income) AS s FROM pums", policy, schemas, frames_to_tables(pums), 1)
    assert cells.column("__dp_sum_income").to_pylist() == [16]
    assert cells.column("__dp_n_income").to_pylist() == [2]
    assert sorted(v for v in cells.column("__dp_values_income").to_pylist()[0] if v is not None) == [7, 9]


def test_quantiles_release_every_cell_within_the_bounds_with_a_rank_bound(
    policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    sql = (
        "SELECT educ, MEDIAN(income) AS m, QUANTILE_CONT(income, 0.9) AS p90, QUANTILE(income, 0.1) AS p10"
        " FROM pums WHERE race = 6 GROUP BY educ"
    )
    plan = plan_dp(validate(sql, policy, schemas), schemas, 1)
    assert [a.alpha for a in plan.aggregates] == [0.5, 0.9, 0.1]
    noisy = answer(plan, DuckDBEngine().run(plan.sql, tables), Epsilon(0.9), 1)
    assert noisy.table.num_rows == 16  # race 6 has 3 persons: most cells are empty, and still released
    assert noisy.epsilon_each == Epsilon(0.9).split(3)
    for column in ("m", "p90", "p10"):
        assert all(0 <= v <= 500_000 for v in noisy.table.column(column).to_pylist())
        errors = noisy.errors[column]
        assert len(errors) == 16
        assert all(isinstance(e, dp.NoisyQuantile) and e.scale > 0 and e.rank_bound95 > 0 for e in errors)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT QUANTILE_CONT(income, 0) AS q FROM pums", id="q_zero"),
        pytest.param("SELECT QUANTILE(income, 1) AS q FROM pums", id="q_one"),
        pytest.param("SELECT race, MEDIAN(married) AS m FROM pums GROUP BY race", id="unbounded_column"),
        pytest.param("SELECT QUANTILE_DISC(income, 0.5) AS q FROM pums", id="quantile_disc"),
    ],
)
def test_unsupported_quantiles_name_the_rule(policy: Policy, schemas: dict[str, DatasetSchema], sql: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan_dp(validate(sql, policy, schemas), schemas, 1)
    assert refused.value.details["rule"] == "dp_unsupported"


def test_unique_units_skip_the_capping_pass_with_the_same_cells(
    policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    """Where every row is its own unit, capping to max_rows keeps every row: the same exact cells, less work."""
    plan = validate("SELECT race, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY race", policy, schemas)
    capped = plan_dp(plan, schemas, 1)
    direct = plan_dp(plan, schemas, 1, frozenset({"pums"}))
    assert "ROW_NUMBER" in capped.sql.upper()
    assert "ROW_NUMBER" not in direct.sql.upper()
    order = [("__dp_key_0", "ascending")]
    assert DuckDBEngine().run(capped.sql, tables).sort_by(order).equals(DuckDBEngine().run(direct.sql, tables).sort_by(order))


def test_a_bare_count_over_unique_units(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = validate("SELECT COUNT(*) AS n FROM pums WHERE race = 6", policy, schemas)
    cells = DuckDBEngine().run(plan_dp(plan, schemas, 1, frozenset({"pums"})).sql, tables)
    assert cells.column(COUNT).to_pylist() == [5]
