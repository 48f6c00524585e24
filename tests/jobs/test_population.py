"""Populations of a job's rows: matched by row, never by key; one run gives values and populations; joins per dataset."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroaring import BitMap

from jobs.engine import DuckDBEngine
from jobs.population import (
    BITSTRING_BUDGET,
    CONTAINER_BITS,
    _bitstring_bitmap,
    bitstring_datasets,
    by_version,
    group_populations,
    population_sql,
    query_unit_datasets,
    split,
    unit_dictionary,
    with_unit_index,
)
from jobs.query.validate import validate
from jobs.stats import plan as plan_stats
from policies.model import Policy
from tests.jobs.conftest import POLICY, SCHEMAS


def people() -> pa.Table:
    """Eight people; person 7 (pid 70) alone has a NaN education, and persons 0 and 1 share a row each twice."""
    pid = [10, 11, 20, 30, 40, 50, 60, 70, 10, 11]
    return pa.table(
        {
            "pid": pa.array(pid, pa.int64()),
            "age": pa.array([30, 31, 40, 41, 50, 51, 60, 61, 30, 31], pa.int64()),
            "sex": pa.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], pa.int64()),
            "educ": pa.array([1.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0, float("nan"), 1.0, 1.0]),
            "race": pa.array([1, 1, 1, 1, 1, 1, 1, 5, 1, 1], pa.int64()),
            "income": pa.array([1.0, 2, 3, 4, 5, 6, 7, 8, 1, 2]),
            "married": pa.array([0] * 10, pa.int64()),
        }
    )


def indices(table: pa.Table, pids: list[int]) -> BitMap:
    dictionary = unit_dictionary(table, "pid").to_pylist()
    return BitMap([dictionary.index(p) for p in pids])


def run(
    sql: str, tables: dict[str, pa.Table], datasets: dict[str, str], *, bitstrings: bool = False
) -> tuple[pa.Table, dict[str, list[BitMap]]]:
    """The population run as the executor makes it: row positions where a plan counts rows of a table of distinct units
    (as bitstrings if ``bitstrings``, as lists if not)."""
    unique = frozenset(name for name, table in tables.items() if pc.count_distinct(table.column("pid")).as_py() == table.num_rows)
    population = population_sql(sql, unique, {name: tables[name].num_rows for name in unique} if bitstrings else None)
    assert population.bitstrings == (frozenset(population.indexed) if bitstrings else frozenset())
    dictionaries = {
        column: None if column in population.indexed else unit_dictionary(tables[name], "pid") for column, name in datasets.items()
    }
    indexed = {name: with_unit_index(table) if name in population.indexed_datasets else table for name, table in tables.items()}
    return split(DuckDBEngine().run(population.sql, indexed), dictionaries)


def distinct_people() -> pa.Table:
    """The eight people of ``people``, one row each."""
    return people().slice(0, 8)


def test_a_nan_key_row_gets_its_own_people() -> None:
    table = people()
    plan = validate("SELECT educ, SUM(income) AS s FROM pums GROUP BY educ", POLICY, SCHEMAS)
    raw, populations = run(plan.executable_sql, {"pums": table}, dict.fromkeys(plan.unit_columns, "pums"))
    rows = {(None if math.isnan(v) else v): populations["__units_0"][i] for i, v in enumerate(raw.column("educ").to_pylist())}
    assert rows[None] == indices(table, [70])  # NaN != NaN: a key lookup would find nobody
    assert rows[1.0] == indices(table, [10, 11, 40, 60])
    assert raw.column("__units_0").to_pylist() == [len(populations["__units_0"][i]) for i in range(raw.num_rows)]


def test_one_run_gives_the_plans_values_and_unit_counts() -> None:
    table = people()
    plan = validate("SELECT sex, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY sex ORDER BY sex", POLICY, SCHEMAS)
    plain = DuckDBEngine().run(plan.executable_sql, {"pums": table})
    raw, _ = run(plan.executable_sql, {"pums": table}, dict.fromkeys(plan.unit_columns, "pums"))
    assert raw.to_pylist() == plain.to_pylist()


def test_a_join_has_a_population_per_dataset() -> None:
    pums, tax = people(), pa.table({"pid": pa.array([20, 30, 70], pa.int64()), "industry": ["a", "a", "b"], "tax_paid": [1.0, 2, 3]})
    sql = "SELECT t.industry, SUM(p.income) AS s FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY t.industry ORDER BY t.industry"
    plan = validate(sql, POLICY, SCHEMAS)
    assert query_unit_datasets(plan.sql) == ["pums", "tax"]
    raw, populations = run(plan.executable_sql, {"pums": pums, "tax": tax}, dict(zip(plan.unit_columns, ["pums", "tax"], strict=True)))
    assert populations["__units_0"][0] == indices(pums, [20, 30])
    assert populations["__units_1"][1] == indices(tax, [70])
    versions = by_version([("__units_0", "v-pums"), ("__units_1", "v-tax")], populations, raw.num_rows)
    assert set(versions) == {"v-pums", "v-tax"}


def test_a_self_join_counts_anyone_on_either_side() -> None:
    populations = {"__units_0": [BitMap([1, 2])], "__units_1": [BitMap([2, 3])]}
    assert by_version([("__units_0", "v"), ("__units_1", "v")], populations, 1) == {"v": [BitMap([1, 2, 3])]}


def test_stats_tables_have_populations_with_margins() -> None:
    table = people()
    policy = Policy.model_validate({**POLICY.model_dump(mode="json"), "job_kinds": ["stats"]})
    plan = plan_stats({"op": "crosstab", "dataset": "pums", "index": ["sex"], "columns": ["race"], "margins": True}, policy, SCHEMAS)
    assert plan.sql is not None
    raw, populations = run(plan.sql, {"pums": table}, dict.fromkeys(plan.unit_columns, "pums"))
    sizes = raw.column("__units_0").to_pylist()
    assert max(sizes) == 8  # the grand total: everyone
    assert [len(p) for p in populations["__units_0"]] == sizes


def test_a_plan_that_counts_rows_of_a_table_not_known_to_be_distinct_units_is_refused_not_audited_wrongly() -> None:
    plan = validate("SELECT COUNT(*) AS n FROM pums", POLICY, SCHEMAS, frozenset({"pums"}))
    with pytest.raises(ValueError, match="distinctly"):
        population_sql(plan.executable_sql)
    with pytest.raises(ValueError, match="distinctly"):
        population_sql(plan.executable_sql, frozenset({"tax"}))


PER_ROW = [
    pytest.param("SELECT sex, COUNT(*) AS n, AVG(income) AS m FROM pums GROUP BY sex ORDER BY sex", id="grouped"),
    pytest.param("SELECT educ, SUM(income) AS s FROM pums GROUP BY educ ORDER BY educ", id="nan_key"),
    pytest.param("SELECT COUNT(*) AS n, SUM(income) AS s FROM pums", id="one_cell"),
    pytest.param("SELECT COUNT(*) AS n FROM pums WHERE age > 1000", id="no_rows"),
    pytest.param("SELECT race, MEDIAN(income) AS m FROM pums GROUP BY race ORDER BY race", id="ranks"),
    pytest.param(
        "SELECT d.sex, SUM(d.income) AS s FROM (SELECT sex, income FROM pums WHERE age > 35) AS d GROUP BY d.sex ORDER BY d.sex",
        id="derived",
    ),
]


@pytest.mark.parametrize("bitstrings", [False, True], ids=["lists", "bitstrings"])
@pytest.mark.parametrize("sql", PER_ROW)
def test_rows_of_distinct_units_give_the_populations_and_values_of_distinct_counting(sql: str, bitstrings: bool) -> None:
    """The per-row plan's run (row positions, listed or as bitstrings) and the distinct plan's run (units through the
    dictionary) agree row by row (both ordered)."""
    table = {"pums": distinct_people()}
    per_row, distinct = validate(sql, POLICY, SCHEMAS, frozenset({"pums"})), validate(sql, POLICY, SCHEMAS)
    assert "COUNT(DISTINCT" not in per_row.executable_sql
    assert population_sql(per_row.executable_sql, frozenset({"pums"})).indexed == dict.fromkeys(per_row.unit_columns, "pums")
    raw, populations = run(per_row.executable_sql, table, dict.fromkeys(per_row.unit_columns, "pums"), bitstrings=bitstrings)
    _, expected = split(
        DuckDBEngine().run(population_sql(distinct.executable_sql).sql, table), {"__units_0": unit_dictionary(table["pums"], "pid")}
    )
    assert populations == expected
    plain = DuckDBEngine().run(per_row.executable_sql, table)
    assert raw.to_pandas().equals(plain.to_pandas())  # values and unit counts as the plan computes them (NaN keys too)
    assert raw.column("__units_0").to_pylist() == [len(p) for p in populations["__units_0"]]


def test_a_row_position_is_its_units_index() -> None:
    """Where every row is a different unit, the first appearance of a unit is its row: the two indices coincide."""
    table = distinct_people()
    raw = DuckDBEngine().run(
        population_sql('SELECT COUNT(*) AS "__units_0" FROM pums', frozenset({"pums"})).sql, {"pums": with_unit_index(table)}
    )
    _, populations = split(raw, {"__units_0": None})
    assert populations["__units_0"] == [indices(table, table.column("pid").to_pylist())] == [BitMap(range(8))]


def test_he_groups_populations_from_row_codes() -> None:
    index, units = np.array([0, 1, 0, 1, 2]), np.array([0, 1, 2, -1, 1])
    assert group_populations(index, units, 3) == [BitMap([0, 2]), BitMap([1]), BitMap([1])]


def _engine_bitstring(positions: list[int], bits: int) -> bytes:
    """DuckDB's own bitstring of ``positions`` over ``bits`` bits, as a population run aggregates it."""
    con = duckdb.connect()
    try:
        con.register("positions", pa.table({"p": pa.array(positions, pa.uint32())}))
        value = con.sql(f"SELECT bitstring_agg(p, 0, {bits - 1}) AS b FROM positions").to_arrow_table().column("b")[0].as_py()  # noqa: S608 - an int
    finally:
        con.close()
    assert isinstance(value, bytes)
    return value


WIDTH = 3 * CONTAINER_BITS


@given(st.sets(st.integers(0, WIDTH - 1), min_size=1, max_size=300))
def test_a_bitstring_becomes_the_bitmap_of_its_set_positions(positions: set[int]) -> None:
    assert _bitstring_bitmap(_engine_bitstring(sorted(positions), WIDTH)) == BitMap(positions)


@pytest.mark.parametrize(
    "positions",
    [
        pytest.param(list(range(4096)), id="array_at_its_largest"),
        pytest.param(list(range(4097)), id="bitset_at_its_smallest"),
        pytest.param(list(range(CONTAINER_BITS)), id="full_container"),
        pytest.param([CONTAINER_BITS - 1, CONTAINER_BITS, WIDTH - 1], id="container_edges"),
        pytest.param([*range(0, WIDTH, 3), 1], id="dense_everywhere"),
        pytest.param([*range(CONTAINER_BITS, CONTAINER_BITS + 5000), 2 * CONTAINER_BITS + 7], id="bitset_beside_array"),
    ],
)
def test_bitstrings_make_array_and_bitset_containers_alike(positions: list[int]) -> None:
    bitmap = _bitstring_bitmap(_engine_bitstring(positions, WIDTH))
    assert bitmap == BitMap(positions)
    assert BitMap.deserialize(bitmap.serialize()) == bitmap  # a well-formed bitmap: it survives the store's round trip
    assert len(bitmap) == len(set(positions))


def test_a_bitstring_that_is_not_whole_containers_is_refused() -> None:
    with pytest.raises(ValueError, match="whole containers"):
        _bitstring_bitmap(_engine_bitstring([0, 5], 20))


def test_bitstrings_are_chosen_only_for_rows_bounded_within_the_budget() -> None:
    rows = {"small": 1_000, "large": 10_000_000}
    assert bitstring_datasets(rows, None) == {}  # unbounded rows: one bitstring per row could be any size
    assert bitstring_datasets(rows, 8) == rows  # e.g. one key of six declared values
    per_large = 10_027_008 // 8  # 10M rows round up to 153 whole containers
    assert bitstring_datasets(rows, BITSTRING_BUDGET // per_large) == rows
    assert bitstring_datasets(rows, BITSTRING_BUDGET // per_large + 1) == {"small": 1_000}
