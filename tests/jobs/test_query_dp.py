"""The DP form of a query: supported shapes, the per-unit row cap, clamping, and cells over whole domains."""

from __future__ import annotations

import pyarrow as pa
import pytest

from core.errors import PolicyViolation
from core.schema import DatasetSchema
from jobs.engine import DuckDBEngine
from jobs.query import validate
from jobs.query.dp import COUNT, answer, plan_dp
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
        pytest.param("SELECT race, SUM(income) AS s FROM pums GROUP BY race HAVING SUM(income) > 0", id="having"),
    ],
)
def test_unsupported_shapes_name_the_rule(policy: Policy, schemas: dict[str, DatasetSchema], sql: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        plan_dp(validate(sql, policy, schemas), schemas, 1)
    assert refused.value.details["rule"] == "dp_unsupported"
