"""The shape of the evidence rewrite: what stays as it was, what is added where, in which order, in how many passes.

Values are checked against pandas in ``test_query_evidence``; here the plans are checked by their
columns, their rows against the analyst's own query, and the tree of their executable SQL.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from core.errors import InternalError
from core.schema import DatasetSchema
from jobs.query import QueryPlan, validate
from policies.evidence import missing_column
from policies.model import Policy
from tests.jobs.conftest import frames_to_tables, read_pums, run

COUNT_ONLY = {
    "group_by": "SELECT race, COUNT(*) AS n FROM pums GROUP BY race",
    "no_group_by": "SELECT COUNT(*) AS n FROM pums",
    "ordered": "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ ORDER BY educ DESC",
    "join": "SELECT t.industry, COUNT(*) AS n FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry",
    "derived_table": "SELECT s.race, COUNT(*) AS n FROM (SELECT race FROM pums WHERE age > 30) AS s GROUP BY s.race",
}


@pytest.mark.parametrize("sql", COUNT_ONLY.values(), ids=COUNT_ONLY.keys())
def test_count_only_queries_are_unchanged(sql: str, policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]) -> None:
    plan = validate(sql, policy, schemas, top_n=3)
    assert plan.evidence_columns == ()
    assert plan.executable_sql == validate(sql, policy, schemas).executable_sql
    assert run(plan.executable_sql, tables).column_names == [o.name for o in plan.outputs] + list(plan.unit_columns)


def test_count_of_a_column_adds_its_missing_count_inline(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    plan = validate("SELECT race, COUNT(income) AS n FROM pums GROUP BY race", policy, schemas, top_n=2)
    assert plan.evidence_columns == (missing_column("n"),)
    assert "WITH" not in plan.executable_sql


ORDERED = {
    "output_key_desc": "SELECT race, SUM(income) AS s, MEDIAN(income) AS m FROM pums GROUP BY race ORDER BY race DESC",
    "two_keys": "SELECT race, sex, MAX(income) AS mx FROM pums GROUP BY race, sex ORDER BY sex, race DESC",
    "key_expression": "SELECT FLOOR(age / 10) AS decade, MIN(income) AS mn FROM pums GROUP BY FLOOR(age / 10) ORDER BY decade",
    "alias_ascending": "SELECT educ, AVG(income) AS a FROM pums GROUP BY educ ORDER BY educ",
    "nulls_first": "SELECT race, SUM(income) AS s FROM pums GROUP BY race ORDER BY race DESC NULLS FIRST",
}


@pytest.mark.parametrize("sql", ORDERED.values(), ids=ORDERED.keys())
@pytest.mark.parametrize("unique", [False, True], ids=["distinct_units", "rows_are_units"])
def test_order_and_limit_still_hold(sql: str, unique: bool, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """The outputs come in the analyst's order, as many as the analyst's query returns."""
    tables = frames_to_tables(read_pums("PUMS_pid.csv"))
    plan = validate(sql, policy, schemas, frozenset({"pums"}) if unique else frozenset(), top_n=2)
    assert plan.evidence_columns
    names = [output.name for output in plan.outputs]
    assert run(plan.executable_sql, tables).select(names).to_pylist() == run(plan.sql, tables).to_pylist()


EVIDENCE_NAMES: dict[str, tuple[str, list[str]]] = {
    "sum_then_median": (
        "SELECT race, SUM(income) AS s, MEDIAN(income) AS m FROM pums GROUP BY race",
        ["__top_s", "__total_s", "__neg_s", "__missing_s", "__missing_m", "__below_m", "__above_m"],
    ),
    "count_then_min_then_avg": (
        "SELECT COUNT(*) AS n, MIN(income) AS lo, AVG(income) AS a FROM pums",
        ["__missing_lo", "__below_lo", "__above_lo", "__top_a", "__total_a", "__neg_a", "__missing_a"],
    ),
}


@pytest.mark.parametrize(("sql", "names"), EVIDENCE_NAMES.values(), ids=EVIDENCE_NAMES.keys())
@pytest.mark.parametrize("unique", [False, True], ids=["distinct_units", "rows_are_units"])
def test_evidence_columns_follow_the_units_by_output(
    sql: str, names: list[str], unique: bool, policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    plan = validate(sql, policy, schemas, frozenset({"pums"}) if unique else frozenset(), top_n=2)
    assert list(plan.evidence_columns) == names
    result = run(plan.executable_sql, tables)
    assert result.column_names == [o.name for o in plan.outputs] + list(plan.unit_columns) + names
    for name in names:  # the contract's types: LIST<DOUBLE>, DOUBLE, BIGINT
        expected = pa.list_(pa.float64()) if name.startswith("__top_") else pa.float64() if name.startswith("__total_") else pa.int64()
        assert result.schema.field(name).type.equals(expected, check_metadata=False) or result.schema.field(name).type == expected


CORPUS = sorted(path for path in (Path(__file__).parent / "query_cases").glob("*.sql") if not path.stem.endswith("_fail"))


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_corpus_queries_keep_their_rows_with_evidence(
    path: Path, policy: Policy, schemas: dict[str, DatasetSchema], tables: dict[str, pa.Table]
) -> None:
    """Every passing corpus query runs with evidence: the same output rows (in order where it has ORDER BY), evidence after the units."""
    plan = validate(path.read_text(), policy, schemas, top_n=2)
    result = run(plan.executable_sql, tables)
    names = [output.name for output in plan.outputs]
    assert result.column_names == names + list(plan.unit_columns) + list(plan.evidence_columns)
    with_evidence, analysts = result.select(names).to_pylist(), run(plan.sql, tables).to_pylist()
    analyst = sqlglot.parse_one(plan.sql, read="duckdb")
    if analyst.args.get("order") is not None:
        assert with_evidence == analysts
    elif analyst.args.get("limit") is not None:  # which rows a LIMIT without ORDER BY keeps is up to the engine
        assert len(with_evidence) == len(analysts)
    else:
        assert sorted(map(repr, with_evidence)) == sorted(map(repr, analysts))


def _per_unit_passes(plan: QueryPlan) -> list[exp.Select]:
    """The inner GROUP BY (keys, unit) subqueries of the plan."""
    tree = sqlglot.parse_one(plan.executable_sql, read="duckdb")
    return [subquery.this for subquery in tree.find_all(exp.Subquery) if subquery.alias == "__per_unit"]


def test_all_evidence_shares_one_per_unit_pass(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """SUM and AVG of one argument share its per-unit total; ranks use per-unit MIN and MAX from the same pass."""
    sql = (
        "SELECT race, SUM(income) AS s, AVG(income) AS a, SUM(income * income) AS g, AVG(income * income) AS h, MEDIAN(income) AS m "
        "FROM pums GROUP BY race"
    )
    plan = validate(sql, policy, schemas, top_n=2)
    [inner] = _per_unit_passes(plan)
    product = 'SUM(TRY_CAST("pums"."income" AS DOUBLE) * TRY_CAST("pums"."income" AS DOUBLE))'  # cannot overflow (jobs.query.safety)
    aggregates = sorted(projection.unalias().sql("duckdb") for projection in inner.expressions if projection.find(exp.AggFunc))
    assert aggregates == ['MAX("pums"."income")', 'MIN("pums"."income")', 'SUM("pums"."income")', product]
    assert [key.sql("duckdb") for key in inner.args["group"].expressions] == ['"pums"."race"', '"pums"."pid"']
    assert plan.executable_sql.count(" JOIN ") == 2  # the per-cell evidence joins the cells for the released values; the result joins it


def test_rows_as_units_need_no_second_pass(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """Where each row is its own unit, per-unit totals are the rows: magnitude evidence is the query's own aggregates."""
    plan = validate("SELECT race, SUM(income) AS s, AVG(income) AS a FROM pums GROUP BY race", policy, schemas, frozenset({"pums"}), 2)
    tree = sqlglot.parse_one(plan.executable_sql, read="duckdb")
    assert tree.args.get("with_") is None
    assert "COUNT(DISTINCT" not in plan.executable_sql


def test_the_tree_is_built_not_concatenated(policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    """The executable text parses back to the same tree (no text assembly that could change meaning)."""
    plan = validate("SELECT race, SUM(income) AS s, MEDIAN(income) AS m FROM pums GROUP BY race", policy, schemas, top_n=2)
    tree = sqlglot.parse_one(plan.executable_sql, read="duckdb")
    assert tree.sql(dialect="duckdb") == plan.executable_sql


@pytest.mark.parametrize("top_n", [0, -1])
def test_top_n_must_be_positive(top_n: int, policy: Policy, schemas: dict[str, DatasetSchema]) -> None:
    with pytest.raises(InternalError):
        validate("SELECT SUM(income) AS s FROM pums", policy, schemas, top_n=top_n)
