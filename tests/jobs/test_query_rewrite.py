"""The rewrite: the executable query returns the analyst's rows plus, per table reference, the distinct
privacy units behind each row, and DuckDB computes them right (checked against pandas)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from core.schema import DatasetSchema
from jobs.query import validate
from policies.model import Policy
from tests.jobs.conftest import frames_to_tables, read_pums, run, tax_register

Expected = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (pums, tax) -> expected rows by group key


@dataclass(frozen=True)
class UnitCase:
    sql: str
    data: str  # the PUMS file behind the pums table
    keys: list[str]  # group-key outputs that identify a row
    expected: Expected


def _per_race(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return pums.groupby("race").agg(n=("pid", "size"), __units_0=("pid", "nunique"))


def _per_race_of_men(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _per_race(pums[pums.sex == 1], tax)


def _per_race_in_list(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _per_race(pums[pums.educ.isin([9, 10, 11, 12, 13])], tax)


def _per_industry_joined(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    joined = pums.merge(tax, on="pid")
    return joined.groupby("industry").agg(n=("pid", "size"), __units_0=("pid", "nunique"), __units_1=("pid", "nunique"))


def _per_sex_self_joined(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    joined = pums.merge(pums[["pid"]], on="pid")
    return joined.groupby("sex").agg(n=("pid", "size"), __units_0=("pid", "nunique"), __units_1=("pid", "nunique"))


def _overall(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"n": [len(pums)], "__units_0": [pums.pid.nunique()]})


UNIT_CASES = {
    "group_by_dup": UnitCase("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", "PUMS_dup.csv", ["race"], _per_race),
    "group_by_pid": UnitCase("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", "PUMS_pid.csv", ["race"], _per_race),
    "derived_table_dup": UnitCase(
        "SELECT s.race, COUNT(*) AS n FROM (SELECT race FROM pums WHERE sex = 1) AS s GROUP BY s.race",
        "PUMS_dup.csv",
        ["race"],
        _per_race_of_men,
    ),
    "in_list_dup": UnitCase(
        "SELECT race, COUNT(*) AS n FROM pums WHERE educ IN (9, 10, 11, 12, 13) GROUP BY race",
        "PUMS_dup.csv",
        ["race"],
        _per_race_in_list,
    ),
    "join_dup": UnitCase(
        "SELECT t.industry, COUNT(*) AS n FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
        "PUMS_dup.csv",
        ["industry"],
        _per_industry_joined,
    ),
    "self_join_dup": UnitCase(
        "SELECT a.sex, COUNT(*) AS n FROM pums AS a JOIN pums AS b ON a.pid = b.pid GROUP BY a.sex",
        "PUMS_dup.csv",
        ["sex"],
        _per_sex_self_joined,
    ),
    "no_group_by_dup": UnitCase("SELECT COUNT(*) AS n FROM pums", "PUMS_dup.csv", [], _overall),
}


@pytest.mark.parametrize("case", UNIT_CASES.values(), ids=UNIT_CASES.keys())
def test_unit_counts_match_pandas(case: UnitCase, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    pums = read_pums(case.data)
    plan = validate(case.sql, policy, schemas)
    result = run(plan.executable_sql, frames_to_tables(pums)).to_pandas()
    expected = case.expected(pums, tax_register(pums))
    columns = [output.name for output in plan.outputs if output.name not in case.keys] + list(plan.unit_columns)
    assert list(expected.columns) == columns
    if case.keys:
        result = result.set_index(case.keys).sort_index()
    pd.testing.assert_frame_equal(result[columns], expected[columns], check_dtype=False, check_names=False)


def test_pums_dup_counts_persons_not_rows(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """The reason for the rewrite: in PUMS_dup some cells have many more rows than persons."""
    plan = validate("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", policy, schemas)
    rows = run(plan.executable_sql, frames_to_tables(read_pums("PUMS_dup.csv"))).to_pylist()
    assert any(row["n"] > row["__units_0"] for row in rows)


def test_pums_pid_small_races(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = validate("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", policy, schemas)
    units = {row["race"]: row["__units_0"] for row in run(plan.executable_sql, tables).to_pylist()}
    assert units[5] == 1
    assert units[6] == 5


SHAPES = {
    "one_table": ("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", {"__units_0": '"pums"."pid"'}),
    "aliased": ("SELECT COUNT(*) AS n FROM pums AS p", {"__units_0": '"p"."pid"'}),
    "join": (
        "SELECT t.industry, SUM(p.income) AS total FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
        {"__units_0": '"p"."pid"', "__units_1": '"t"."pid"'},
    ),
    "three_tables": (
        "SELECT COUNT(*) AS n FROM tax AS a JOIN pums AS b ON a.pid = b.pid JOIN tax AS c ON c.pid = b.pid",
        {"__units_0": '"a"."pid"', "__units_1": '"b"."pid"', "__units_2": '"c"."pid"'},
    ),
    "derived_table": (
        "SELECT s.race, COUNT(*) AS n FROM (SELECT race FROM pums WHERE age > 30) AS s GROUP BY s.race",
        {"__units_0": '"s"."__pu_0"'},
    ),
    "derived_table_joined": (
        "SELECT t.industry, COUNT(*) AS n FROM tax AS t JOIN (SELECT pid FROM pums WHERE sex = 1) AS m ON m.pid = t.pid GROUP BY 1",
        {"__units_0": '"t"."pid"', "__units_1": '"m"."__pu_1"'},
    ),
}


@pytest.mark.parametrize(("sql", "units"), SHAPES.values(), ids=SHAPES.keys())
def test_unit_columns_are_appended_count_distincts(
    sql: str, units: dict[str, str], policy: Policy, schemas: dict[str, DatasetSchema]
) -> None:
    plan = validate(sql, policy, schemas)
    assert plan.unit_columns == tuple(units)
    executable = sqlglot.parse_one(plan.executable_sql, read="duckdb")
    assert isinstance(executable, exp.Select)
    appended = executable.expressions[len(plan.outputs) :]
    assert [projection.sql("duckdb") for projection in appended] == [f'COUNT(DISTINCT {unit}) AS "{name}"' for name, unit in units.items()]


@pytest.mark.parametrize(("sql", "units"), SHAPES.values(), ids=SHAPES.keys())
def test_rewrite_keeps_the_query(sql: str, units: dict[str, str], policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """Without the appended columns (and the privacy units passed through derived tables) it is the analyst's query."""
    plan = validate(sql, policy, schemas)
    executable = sqlglot.parse_one(plan.executable_sql, read="duckdb")
    assert isinstance(executable, exp.Select)
    for column in list(executable.find_all(exp.Alias)):
        if column.alias.startswith("__"):
            column.pop()
    assert executable == sqlglot.parse_one(plan.sql, read="duckdb")


def test_order_and_limit_are_kept(policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = validate("SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY race DESC", policy, schemas)
    rows = run(plan.executable_sql, tables).to_pylist()
    races = [row["race"] for row in rows]
    assert races == sorted(races, reverse=True)
    assert all(row["__units_0"] == row["n"] for row in rows)  # PUMS_pid: one row per person


UNIQUE_CASES = {
    "group_by": ("SELECT race, COUNT(*) AS n, AVG(income) AS m FROM pums GROUP BY race", True),
    "filtered": ("SELECT educ, COUNT(*) AS n FROM pums WHERE sex = 1 GROUP BY educ", True),
    "derived_table": ("SELECT s.race, COUNT(*) AS n FROM (SELECT race FROM pums WHERE age > 30) AS s GROUP BY s.race", True),
    "join_keeps_distinct": ("SELECT a.sex, COUNT(*) AS n FROM pums AS a JOIN pums AS b ON a.pid = b.pid GROUP BY a.sex", False),
}


@pytest.mark.parametrize(("sql", "shortcut"), UNIQUE_CASES.values(), ids=UNIQUE_CASES.keys())
def test_unique_units_count_rows_with_the_same_result(sql: str, shortcut: bool, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """Where every row is its own unit (PUMS_pid), COUNT(*) replaces the distinct count: same numbers, less work."""
    tables = frames_to_tables(read_pums("PUMS_pid.csv"))
    plain = validate(sql, policy, schemas)
    fast = validate(sql, policy, schemas, unique_units=frozenset({"pums"}))
    assert ("COUNT(DISTINCT" not in fast.executable_sql) is shortcut
    keys = [o.name for o in plain.outputs if o.kind.value == "group_key"]
    slow_rows = run(plain.executable_sql, tables).to_pandas().sort_values(keys).reset_index(drop=True)
    fast_rows = run(fast.executable_sql, tables).to_pandas().sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(slow_rows, fast_rows, check_dtype=False)
