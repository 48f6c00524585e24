"""Failure carries no secret: every allowed function and operator, as validated, runs on extreme values without raising.

Each query below passes validation under the corpus policy; hypothesis then fills PUMS and the tax
register with the values most likely to make DuckDB raise (the largest and smallest integers, NaN,
infinities, empty and non-numeric text, NULL, the ends of the date range) and every validated plan
(with its evidence columns, over rows that are units and over rows that are not) must run. The
plans are made once; each example loads its tables once and runs them all. The second test shows,
rewrite by rewrite of ``jobs.query.safety``, that the text as written does raise on such values:
delete a rewrite and both tests fail.
"""

from __future__ import annotations

import datetime

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.errors import PolicyViolation
from core.schema import DatasetSchema
from jobs.query import validate
from tests.jobs.conftest import POLICY, SCHEMAS

INT64 = st.one_of(st.sampled_from([2**63 - 1, -(2**63), 0, -1, 1, 40]), st.integers(-(2**63), 2**63 - 1)) | st.none()
FLOAT = st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 0.0]), st.floats()) | st.none()
TEXT = st.one_of(st.sampled_from(["", "x", "1", "nan", "9" * 40, "2020-13-45"]), st.text(max_size=8)) | st.none()
DATE = st.one_of(st.sampled_from([datetime.date.min, datetime.date.max, datetime.date(2020, 1, 1)]), st.dates()) | st.none()

PUMS_COLUMNS = ("age", "sex", "educ", "race", "income", "married", "pid")
PUMS_ROW = st.fixed_dictionaries(dict.fromkeys(PUMS_COLUMNS, INT64))
TAX_ROW = st.fixed_dictionaries({"pid": INT64, "industry": TEXT, "tax_paid": FLOAT, "filed": DATE, "firm_id": INT64})

QUERIES = {
    "cast_text_to_int": "SELECT COUNT(*) AS n FROM tax WHERE CAST(industry AS INT) = 1",
    "cast_case_to_int": "SELECT COUNT(*) AS n FROM pums WHERE CAST(CASE WHEN race = 5 THEN 'x' ELSE '1' END AS INT) = 1",
    "cast_double_to_bigint": "SELECT COUNT(*) AS n FROM tax WHERE CAST(CAST(industry AS DOUBLE) AS BIGINT) > 0",
    "cast_text_to_date": "SELECT COUNT(*) AS n FROM tax WHERE CAST(industry AS DATE) > DATE '2020-01-01'",
    "cast_narrowing": "SELECT COUNT(*) AS n FROM pums WHERE age::TINYINT = 1 OR CAST(educ AS SMALLINT) IS NULL",
    "integer_overflow": "SELECT COUNT(*) AS n FROM pums WHERE age * 4611686018427387904 + age - age > -age",
    "abs_of_smallest": "SELECT ABS(age) AS a, COUNT(*) AS n FROM pums GROUP BY ABS(age)",
    "division_by_zero": (
        "SELECT FLOOR(age / 0) AS k, COUNT(*) AS n FROM pums WHERE age / (sex - sex) > 1 OR sex / sex < 1 GROUP BY FLOOR(age / 0)"
    ),
    "round_floor_ceil": "SELECT ROUND(CEIL(age / 7), -2) AS k, COUNT(*) AS n FROM pums GROUP BY ROUND(CEIL(age / 7), -2)",
    "round_to_tens_of_digits": "SELECT COUNT(*) AS n FROM pums WHERE ROUND(age, -19) = 0 AND ROUND(age, 30) > 0",
    "decimal_literals": "SELECT COUNT(*) AS n FROM pums WHERE age = 1.000000000000000000000000000001 OR age IN (2.5, 3) OR age > -0.5",
    "decimal_in_branches": (
        "SELECT COUNT(*) AS n FROM pums WHERE COALESCE(age, 1.000000000000000000000000000001) > 0 "
        "AND age > 99999999999999999999999999999999999999999"
    ),
    "text_functions": "SELECT LOWER(industry) AS a, COUNT(*) AS n FROM tax WHERE UPPER(industry) <> '' GROUP BY LOWER(industry)",
    "date_parts": "SELECT YEAR(filed) AS y, COUNT(*) AS n FROM tax WHERE MONTH(filed) IN (1, 2) GROUP BY YEAR(filed)",
    "extract": "SELECT EXTRACT(month FROM filed) AS m, COUNT(*) AS n FROM tax GROUP BY EXTRACT(month FROM filed)",
    "comparisons": "SELECT COUNT(*) AS n FROM pums WHERE age BETWEEN -1 AND 1000 OR NOT sex IN (1, 2) OR educ IS NULL",
    "case_coalesce_in_where": "SELECT COUNT(*) AS n FROM pums WHERE COALESCE(NULLIF(educ, 0), GREATEST(age, LEAST(sex, 1))) > 3",
    "measure_arithmetic": "SELECT SUM(income * income * income) AS s, AVG(-income) AS a FROM pums",
    "aggregates_of_floats": "SELECT SUM(tax_paid) AS s, AVG(tax_paid) AS a, MEDIAN(tax_paid) AS m, MIN(tax_paid) AS lo FROM tax",
    "quantile_of_ints": "SELECT QUANTILE_CONT(income, 0.9) AS q, MAX(income) AS hi FROM pums",
    "grouped_sums_over_a_join": (
        "SELECT pums.sex AS sex, SUM(pums.income + pums.income) AS s, AVG(tax.tax_paid * tax.tax_paid) AS a "
        "FROM pums JOIN tax ON pums.pid = tax.pid GROUP BY pums.sex"
    ),
}


def _plans() -> dict[str, str]:
    """Every plan once, with its evidence (top_n=2); where there is evidence, also over PUMS as a dataset whose rows are units."""
    plans = {}
    for name, sql in QUERIES.items():
        plans[name] = validate(sql, POLICY, SCHEMAS, top_n=2)
        if plans[name].evidence_columns:
            plans[f"{name}/units"] = validate(sql, POLICY, SCHEMAS, unique_units=frozenset({"pums"}), top_n=2)
    return {name: plan.executable_sql for name, plan in plans.items()}


PLANS = _plans()
BIG = dict.fromkeys(PUMS_COLUMNS, 2**63 - 1)
SMALL = dict.fromkeys(PUMS_COLUMNS, -(2**63))
ODD_TAX = [
    {"pid": 2**63 - 1, "industry": "x", "tax_paid": float("inf"), "filed": datetime.date.max, "firm_id": 0},
    {"pid": -(2**63), "industry": "9" * 40, "tax_paid": float("nan"), "filed": datetime.date.min, "firm_id": None},
]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pums=st.lists(PUMS_ROW, min_size=1, max_size=4), tax=st.lists(TAX_ROW, min_size=1, max_size=4))
@example(pums=[BIG, SMALL], tax=ODD_TAX)
@example(pums=[BIG, BIG, {**BIG, "pid": 0}], tax=[{**ODD_TAX[0], "pid": 2**63 - 1}, {**ODD_TAX[0], "pid": 0}])
@example(pums=[{**SMALL, "sex": 0, "educ": 0}], tax=[{**ODD_TAX[1], "tax_paid": -1e308}, {**ODD_TAX[1], "tax_paid": -1e308}])
def test_validated_queries_cannot_fail_on_a_value(pums: list[dict[str, object]], tax: list[dict[str, object]]) -> None:
    con = _connect({"pums": _table(pums, "pums"), "tax": _table(tax, "tax")})
    failures = {}
    try:
        for name, sql in PLANS.items():
            try:
                con.sql(sql).fetchall()
            except duckdb.Error as error:
                failures[name] = str(error).splitlines()[0]
    finally:
        con.close()
    assert not failures


# Per rewrite: a text that raises on one of the values above as written, and validates into a plan that does not.
RAW = {
    "try_cast": "SELECT COUNT(*) AS n FROM tax WHERE CAST(industry AS INT) = 1",
    "double_arithmetic": "SELECT COUNT(*) AS n FROM pums WHERE age + age > 0",
    "double_negation_abs": "SELECT COUNT(*) AS n FROM pums WHERE ABS(age) > 0",
    "double_round": "SELECT COUNT(*) AS n FROM pums WHERE ROUND(age, -19) = 0",
    "decimal_literal_as_double": "SELECT COUNT(*) AS n FROM pums WHERE age = 1.000000000000000000000000000001",
    "division_by_zero_is_null": "SELECT COUNT(*) AS n FROM pums WHERE age / (sex - sex) > 1",
}


@pytest.mark.parametrize("sql", RAW.values(), ids=RAW.keys())
def test_the_raw_forms_do_fail_on_such_values(sql: str) -> None:
    """Without the rewrite the same texts raise on a value: the property above tests something."""
    tables = {"pums": _table([SMALL, BIG], "pums"), "tax": _table(ODD_TAX, "tax")}
    con = _connect(tables)
    try:
        with pytest.raises(duckdb.Error, match=r"Conversion|Overflow|out of range|Division by zero"):
            con.sql(sql).fetchall()
        con.sql(validate(sql, POLICY, SCHEMAS, top_n=2).executable_sql).fetchall()
    finally:
        con.close()


REFUSED = {
    "text_as_condition": "SELECT COUNT(*) AS n FROM tax WHERE industry",
    "number_as_condition": "SELECT COUNT(*) AS n FROM pums WHERE CASE WHEN age THEN TRUE ELSE FALSE END",
    "text_is_true": "SELECT COUNT(*) AS n FROM tax WHERE NOT (industry IS TRUE)",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_conditions_that_are_not_booleans_are_refused(sql: str) -> None:
    """``WHERE industry`` casts each row's text to a boolean and raises on 'x': refused before running."""
    with pytest.raises(PolicyViolation) as refused:
        validate(sql, POLICY, SCHEMAS)
    assert refused.value.details["rule"] == "type_mismatch"


def test_a_cast_to_decimal_is_refused() -> None:
    """A DECIMAL meeting a large integer is cast to the decimal's width and raises: no DECIMAL casts."""
    with pytest.raises(PolicyViolation) as refused:
        validate("SELECT COUNT(*) AS n FROM pums WHERE CAST(age AS DECIMAL(38, 37)) = age", POLICY, SCHEMAS)
    assert refused.value.details["rule"] == "function_not_allowed"


def _connect(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB as the engine has it (``tests.jobs.conftest.run``), except that x / 0 raises
    (not IEEE division): the plans must not depend on DuckDB's default of returning infinity."""
    con = duckdb.connect(":memory:")
    for name, table in tables.items():
        con.register(name, table)
    con.execute("SET ieee_floating_point_ops = false")
    con.execute("SET threads = 1")
    con.execute("SET enable_external_access = false")
    return con


def _table(rows: list[dict[str, object]], name: str) -> pa.Table:
    schema: DatasetSchema = SCHEMAS[name]
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "date": pa.date32()}
    fields = [pa.field(column, types[spec.type.value]) for column, spec in schema.columns.items() if spec.type.value in types]
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in fields} for row in rows], schema=pa.schema(fields))
