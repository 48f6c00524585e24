"""The evidence columns of the rewrite (``policies.evidence``), computed in DuckDB and checked against pandas.

PUMS_dup has up to four rows per person (``pid``), so per-unit totals differ from row values;
PUMS_null has missing values, missing group keys and rows without a privacy unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from core.schema import DatasetSchema
from jobs.query import QueryPlan, validate
from policies.evidence import above_column, below_column, missing_column, negative_column, top_column, total_column
from policies.model import Policy
from tests.conftest import data_file
from tests.jobs.conftest import frames_to_tables, read_pums, run, tax_register

Rows = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (pums, tax) -> rows behind the cells: keys, "unit", "x"
PUMS_COLUMNS = ["age", "sex", "educ", "race", "income", "married", "pid"]


@dataclass(frozen=True)
class Case:
    sql: str  # its aggregate output under test is named "v"
    rows: Rows
    keys: tuple[str, ...] = ()  # group-key outputs, named as in ``rows``
    data: str = "PUMS_dup.csv"
    unique: bool = False  # plan with unique_units={"pums"} (only for PUMS_pid)
    top_n: int = 2


def _income(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return pums.assign(unit=pums.pid, x=pums.income)


def _income_of_men(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _income(pums[pums.sex == 1], tax)


def _income_by_decade(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _income(pums.assign(decade=(pums.age // 10).astype(float)), tax)


def _joined(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _income(pums.merge(tax, on="pid"), tax)


def _men_joined(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    return _joined(pums[pums.sex == 1], tax)


def _joined_tax(pums: pd.DataFrame, tax: pd.DataFrame) -> pd.DataFrame:
    joined = pums.merge(tax, on="pid")
    return joined.assign(unit=joined.pid, x=joined.tax_paid)


@pytest.fixture
def age_policy(policy: Policy) -> Policy:
    """The test policy with ``pums.age`` a measure, so that ages can be summed and ranked."""
    data = policy.model_dump(mode="json")
    data["columns"]["pums"]["age"] = "measure"
    return Policy.model_validate(data)


def _plan(case: Case, policy: Policy, schemas: dict[str, DatasetSchema]) -> QueryPlan:
    return validate(case.sql, policy, schemas, frozenset({"pums"}) if case.unique else frozenset(), top_n=case.top_n)


def _cells(case: Case, policy: Policy, schemas: dict[str, DatasetSchema]) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The result rows of the case's plan, and the rows behind its cells as pandas sees them."""
    pums = read_pums(case.data)
    plan = _plan(case, policy, schemas)
    result = run(plan.executable_sql, frames_to_tables(pums)).to_pylist()
    return result, case.rows(pums, tax_register(pums))


def _behind(rows: pd.DataFrame, keys: tuple[str, ...], cell: dict[str, Any]) -> pd.DataFrame:
    """The rows behind one result cell: its group keys equal, a missing key matching a missing key."""
    mask = pd.Series(True, index=rows.index)
    for key in keys:
        mask &= rows[key].isna() if cell[key] is None else rows[key] == cell[key]
    return rows[mask]


MAGNITUDE_CASES = {
    "sum_by_race_dup": Case("SELECT race, SUM(income) AS v FROM pums GROUP BY race", _income, ("race",)),
    "avg_by_race_dup": Case("SELECT race, AVG(income) AS v FROM pums GROUP BY race", _income, ("race",)),
    "sum_by_race_dup_top_5": Case("SELECT race, SUM(income) AS v FROM pums GROUP BY race", _income, ("race",), top_n=5),
    "avg_by_race_pid": Case("SELECT race, AVG(income) AS v FROM pums GROUP BY race", _income, ("race",), "PUMS_pid.csv"),
    "sum_by_race_pid_rows_are_units": Case(
        "SELECT race, SUM(income) AS v FROM pums GROUP BY race", _income, ("race",), "PUMS_pid.csv", unique=True, top_n=3
    ),
    "sum_by_two_keys_dup": Case("SELECT sex, race, SUM(income) AS v FROM pums GROUP BY sex, race", _income, ("sex", "race")),
    "no_group_by_dup": Case("SELECT AVG(income) AS v, SUM(income) AS s FROM pums", _income),
    "derived_table_dup": Case(
        "SELECT s.race, SUM(s.income) AS v, MEDIAN(s.income) AS m FROM (SELECT race, income FROM pums WHERE sex = 1) AS s GROUP BY s.race",
        _income_of_men,
        ("race",),
    ),
    "join_first_table_units_dup": Case(
        "SELECT t.industry, SUM(p.income) AS v FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
        _joined,
        ("industry",),
    ),
    "derived_table_joined_dup": Case(
        "SELECT t.industry, SUM(m.income) AS v FROM (SELECT pid, income FROM pums WHERE sex = 1) AS m "
        "JOIN tax AS t ON m.pid = t.pid GROUP BY t.industry",
        _men_joined,
        ("industry",),
    ),
    "join_second_table_argument_dup": Case(
        "SELECT t.industry, AVG(t.tax_paid) AS v, MAX(p.income) AS mx FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
        _joined_tax,
        ("industry",),
    ),
}


@pytest.mark.parametrize("case", MAGNITUDE_CASES.values(), ids=MAGNITUDE_CASES.keys())
def test_magnitude_evidence_matches_pandas(case: Case, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """Top per-unit totals (descending, at most top_n), their sum, and no negative units (incomes are >= 0)."""
    result, rows = _cells(case, policy, schemas)
    assert result
    for cell in result:
        totals = _behind(rows, case.keys, cell).groupby("unit").x.sum()
        assert cell[top_column("v")] == sorted(totals.astype(float), reverse=True)[: case.top_n]
        assert cell[total_column("v")] == pytest.approx(totals.sum())
        assert cell[negative_column("v")] == 0


RANK_CASES = {
    "min_by_educ_dup": Case("SELECT educ, MIN(income) AS v FROM pums GROUP BY educ", _income, ("educ",)),
    "max_by_educ_dup": Case("SELECT educ, MAX(income) AS v FROM pums GROUP BY educ", _income, ("educ",)),
    "median_by_educ_dup": Case("SELECT educ, MEDIAN(income) AS v FROM pums GROUP BY educ", _income, ("educ",)),
    "quantile_cont_by_educ_dup": Case("SELECT educ, QUANTILE_CONT(income, 0.25) AS v FROM pums GROUP BY educ", _income, ("educ",)),
    "percentile_disc_by_educ_dup": Case(
        "SELECT educ, PERCENTILE_DISC(0.9) WITHIN GROUP (ORDER BY income) AS v FROM pums GROUP BY educ", _income, ("educ",)
    ),
    "median_by_educ_pid": Case("SELECT educ, MEDIAN(income) AS v FROM pums GROUP BY educ", _income, ("educ",), "PUMS_pid.csv"),
    "median_by_educ_pid_rows_are_units": Case(
        "SELECT educ, MEDIAN(income) AS v FROM pums GROUP BY educ", _income, ("educ",), "PUMS_pid.csv", unique=True
    ),
    "no_group_by_dup": Case("SELECT MAX(income) AS v, MIN(income) AS mn FROM pums", _income),
    "expression_key_dup": Case(
        "SELECT FLOOR(age / 10) AS decade, MEDIAN(income) AS v FROM pums GROUP BY FLOOR(age / 10)", _income_by_decade, ("decade",)
    ),
    "ordered_by_key_dup": Case("SELECT educ, MIN(income) AS v FROM pums GROUP BY educ ORDER BY educ DESC", _income, ("educ",)),
    "derived_table_dup": Case(
        "SELECT s.race, MEDIAN(s.income) AS v, SUM(s.income) AS sm FROM (SELECT race, income FROM pums WHERE sex = 1) AS s GROUP BY s.race",
        _income_of_men,
        ("race",),
    ),
    "join_dup": Case(
        "SELECT t.industry, MAX(p.income) AS v FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
        _joined,
        ("industry",),
    ),
}


@pytest.mark.parametrize("case", RANK_CASES.values(), ids=RANK_CASES.keys())
def test_rank_evidence_matches_pandas(case: Case, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """Distinct units with a value at or below, and at or above, the released order statistic."""
    result, rows = _cells(case, policy, schemas)
    assert result
    for cell in result:
        behind = _behind(rows, case.keys, cell)
        assert cell[below_column("v")] == behind[behind.x <= cell["v"]].unit.nunique()
        assert cell[above_column("v")] == behind[behind.x >= cell["v"]].unit.nunique()


def _synthetic(incomes: dict[int, list[tuple[int, int]]]) -> pd.DataFrame:
    """PUMS-shaped rows: per race, (pid, income) pairs."""
    records = [(40, 1, 9, race, income, 0, pid) for race, pairs in incomes.items() for pid, income in pairs]
    return pd.DataFrame.from_records(records, columns=PUMS_COLUMNS)


NEGATIVE_CASES = {
    # race 1: pid 1 totals -3 (negative), pid 2 totals +3 despite a negative row, pid 3 -1, pid 4 +10
    "several_rows_per_unit": (_synthetic({1: [(1, -5), (1, 2), (2, 4), (2, -1), (3, -1), (4, 10)], 2: [(5, 7), (6, -2), (6, -2)]}), False),
    "one_row_per_unit": (_synthetic({1: [(1, -5), (2, 3)], 2: [(3, -1), (4, -2), (5, 4)]}), True),
}


@pytest.mark.parametrize(("frame", "unique"), NEGATIVE_CASES.values(), ids=NEGATIVE_CASES.keys())
def test_negative_units_are_counted_per_unit_total(
    frame: pd.DataFrame, unique: bool, policy: Policy, schemas: dict[str, DatasetSchema]
) -> None:
    sql = "SELECT race, SUM(income) AS v, AVG(income) AS a FROM pums GROUP BY race"
    plan = validate(sql, policy, schemas, frozenset({"pums"}) if unique else frozenset(), top_n=2)
    result = {cell["race"]: cell for cell in run(plan.executable_sql, {"pums": pa.Table.from_pandas(frame)}).to_pylist()}
    totals = frame.groupby(["race", "pid"]).income.sum()
    for race, cell in result.items():
        assert cell[negative_column("v")] == cell[negative_column("a")] == (totals[race] < 0).sum()
        assert cell[top_column("v")] == sorted(totals[race].astype(float), reverse=True)[:2]
    assert [result[1][negative_column("v")], result[2][negative_column("v")]] == ([2, 1] if not unique else [1, 2])


def _read_null() -> pd.DataFrame:
    """PUMS_null with nullable integers: income, age, group keys and even pid are missing in some rows."""
    return pd.read_csv(data_file("smartnoise-sdk/PUMS_null.csv")).astype(dict.fromkeys(PUMS_COLUMNS, "Int64"))


def _null_tables() -> dict[str, pa.Table]:
    return {"pums": pa.Table.from_pandas(_read_null(), preserve_index=False)}


MISSING_CASES = {
    "sum_income_by_race": ("SELECT race, SUM(income) AS v FROM pums GROUP BY race", ("race",), "income"),
    "avg_age_by_educ": ("SELECT educ, AVG(age) AS v FROM pums GROUP BY educ", ("educ",), "age"),
    "median_income_by_sex": ("SELECT sex, MEDIAN(income) AS v FROM pums GROUP BY sex", ("sex",), "income"),
    "max_age_by_sex_and_race": ("SELECT sex, race, MAX(age) AS v FROM pums GROUP BY sex, race", ("sex", "race"), "age"),
    "count_income_by_race": ("SELECT race, COUNT(income) AS v FROM pums GROUP BY race", ("race",), "income"),
    "count_distinct_age_by_sex": ("SELECT sex, COUNT(DISTINCT age) AS v FROM pums GROUP BY sex", ("sex",), "age"),
    "sum_income_filtered": ("SELECT educ, SUM(income) AS v FROM pums WHERE sex = 1 GROUP BY educ", ("educ",), "income"),
    "no_group_by": ("SELECT AVG(income) AS v FROM pums", (), "income"),
}


@pytest.mark.parametrize(("sql", "keys", "argument"), MISSING_CASES.values(), ids=MISSING_CASES.keys())
def test_missing_counts_match_pandas(
    sql: str, keys: tuple[str, ...], argument: str, age_policy: Policy, schemas: dict[str, DatasetSchema]
) -> None:
    rows = _read_null()
    if "WHERE" in sql:
        rows = rows[rows.sex.eq(1).fillna(False)]
    plan = validate(sql, age_policy, schemas, top_n=2)
    result = run(plan.executable_sql, _null_tables()).to_pylist()
    assert sum(cell[missing_column("v")] for cell in result) == rows[argument].isna().sum() > 0
    for cell in result:
        assert cell[missing_column("v")] == _behind(rows, keys, cell)[argument].isna().sum()


def test_missing_group_keys_join_null_safely(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """The cell of a missing race gets its evidence too; rows without a pid form one pseudo-unit of the totals."""
    plan = validate("SELECT race, SUM(income) AS v, MEDIAN(income) AS m FROM pums GROUP BY race", policy, schemas, top_n=2)
    result = run(plan.executable_sql, _null_tables()).to_pylist()
    rows = _read_null().assign(unit=lambda d: d.pid, x=lambda d: d.income)
    assert any(cell["race"] is None for cell in result)
    for cell in result:
        behind = _behind(rows, ("race",), cell)
        totals = behind.groupby("unit", dropna=False).x.sum(min_count=1).dropna()
        assert cell[top_column("v")] == sorted(totals.astype(float), reverse=True)[:2]
        assert cell[total_column("v")] == pytest.approx(float(totals.sum()))
        assert cell[below_column("m")] == behind[behind.x <= cell["m"]].unit.nunique()
        assert cell[above_column("m")] == behind[behind.x >= cell["m"]].unit.nunique()
