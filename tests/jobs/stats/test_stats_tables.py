"""Table ops against pandas: values, units per cell, margins and the evidence columns, on real PUMS.

Every case runs on PUMS with one row per person and on PUMS_dup (up to four rows per person), so
that row counts and privacy-unit counts differ. pandas computes the expected value of each cell
from the rows of that cell, margins included.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pytest

from policies.evidence import GROUPING_COLUMN, Output
from policies.model import Aggregate
from policies.output_control import control
from tests.jobs.stats.conftest import FRAMES, as_tables, compute, stats_policy

PANDAS_FUNC = {"count": "count", "sum": "sum", "mean": "mean", "median": "median", "std": "std", "var": "var", "min": "min", "max": "max"}


def key(value: Any) -> Any:
    return None if value is None or pd.isna(value) else int(value)


def pandas_cells(df: pd.DataFrame, dims: list[str], margins: bool) -> dict[tuple[int, tuple[Any, ...]], pd.DataFrame]:
    """The rows behind every cell, keyed as the result labels it: (``__grouping``, dimension values)."""
    cells: dict[tuple[int, tuple[Any, ...]], pd.DataFrame] = {}
    for mask in range(2 ** len(dims)) if margins else [0]:
        kept = [d for i, d in enumerate(dims) if not mask & (1 << (len(dims) - 1 - i))]
        if not kept:
            cells[(mask, (None,) * len(dims))] = df
            continue
        for values, rows in df.groupby(kept, dropna=False):
            found = dict(zip(kept, values if isinstance(values, tuple) else (values,), strict=True))
            cells[(mask, tuple(key(found.get(d)) for d in dims))] = rows
    return cells


def num(value: Any) -> float:
    """A result value as pandas has it: SQL's NULL aggregate (e.g. the std of one value) is NaN."""
    return float("nan") if value is None else float(value)


def result_rows(result: Any, dims: list[str]) -> dict[tuple[int, tuple[Any, ...]], dict[str, Any]]:
    rows = result.table.to_pylist()
    return {(row.get(GROUPING_COLUMN, 0), tuple(key(row[d]) for d in dims)): row for row in rows}


def expected(rows: pd.DataFrame, func: str, value: str | None) -> float:
    if value is None:
        return float(len(rows))
    return float(getattr(rows[value].astype("float64"), PANDAS_FUNC[func])())


CROSSTABS = [
    pytest.param({"index": ["sex"], "columns": ["race"]}, id="sex-by-race"),
    pytest.param({"index": ["educ"], "columns": ["married"], "margins": True}, id="educ-by-married-margins"),
    pytest.param({"index": ["sex", "married"], "columns": ["race"], "margins": True}, id="three-dimensions-margins"),
    pytest.param({"index": ["race"], "values": "income", "aggfunc": list(PANDAS_FUNC), "margins": True}, id="every-aggfunc-margins"),
    pytest.param({"index": "sex", "columns": "married", "values": "income", "aggfunc": "sum"}, id="single-names"),
]


@pytest.mark.parametrize("spec", CROSSTABS)
def test_crosstab_cells_and_units_match_pandas(frame: pd.DataFrame, spec: dict[str, Any]) -> None:
    result = compute({"op": "crosstab", **spec}, as_tables(frame))
    index, columns = spec["index"], spec.get("columns", [])
    dims = [*([index] if isinstance(index, str) else index), *([columns] if isinstance(columns, str) else columns)]
    aggfuncs = spec.get("aggfunc", ["count"])
    funcs = [aggfuncs] if isinstance(aggfuncs, str) else aggfuncs
    value = spec.get("values")
    cells = pandas_cells(frame, dims, spec.get("margins", False))
    got = result_rows(result, dims)
    assert got.keys() == cells.keys()
    for cell, rows in cells.items():
        for func in funcs:
            name = "count" if value is None else f"{func}_{value}"
            assert num(got[cell][name]) == pytest.approx(expected(rows, func, value), nan_ok=True), (cell, name)
        assert got[cell]["__units_0"] == rows["pid"].nunique()
    assert result.dimensions == tuple(dims)
    assert dict(result.outputs) == {("count" if value is None else f"{f}_{value}"): _aggregate(f) for f in funcs}


def _aggregate(func: str) -> Aggregate:
    return {"mean": Aggregate.AVG, "std": Aggregate.STDDEV, "var": Aggregate.VARIANCE}.get(func) or Aggregate(func)


@pytest.mark.parametrize(("index", "columns"), [("sex", "race"), ("educ", "married"), ("race", "educ")], ids=lambda v: v)
def test_crosstab_margins_equal_pandas_crosstab(frame: pd.DataFrame, index: str, columns: str) -> None:
    result = compute({"op": "crosstab", "index": [index], "columns": [columns], "margins": True}, as_tables(frame))
    table = pd.crosstab(frame[index], frame[columns], margins=True)
    rows = result.table.to_pylist()
    for row in rows:
        label_i = "All" if row[GROUPING_COLUMN] & 2 else row[index]
        label_c = "All" if row[GROUPING_COLUMN] & 1 else row[columns]
        assert row["count"] == table.loc[label_i, label_c]
    assert len(rows) == int((table.to_numpy() > 0).sum())


PIVOTS = [
    pytest.param({"index": ["sex"], "values": ["income", "age"], "aggfunc": ["mean", "sum"]}, id="two-values-two-funcs"),
    pytest.param(
        {"index": ["race"], "columns": ["married"], "values": ["income"], "aggfunc": ["median", "max"], "margins": True}, id="margins"
    ),
    pytest.param({"index": ["educ"], "values": "age"}, id="default-mean"),
]


@pytest.mark.parametrize("spec", PIVOTS)
def test_pivot_matches_pandas(frame: pd.DataFrame, spec: dict[str, Any]) -> None:
    result = compute({"op": "pivot", **spec}, as_tables(frame), stats_policy(age="measure"))
    dims = [*spec["index"], *spec.get("columns", [])]
    values = [spec["values"]] if isinstance(spec["values"], str) else spec["values"]
    funcs = spec.get("aggfunc", ["mean"])
    assert [name for name, _ in result.outputs] == [f"{f}_{v}" for f in funcs for v in values]
    if not spec.get("margins"):
        oracle = pd.pivot_table(frame, index=dims, values=values, aggfunc=funcs)
        for row in result.table.to_pylist():
            where = tuple(row[d] for d in dims) if len(dims) > 1 else row[dims[0]]
            for f in funcs:
                for v in values:
                    assert row[f"{f}_{v}"] == pytest.approx(oracle.loc[where, (f, v)])
    cells = pandas_cells(frame, dims, spec.get("margins", False))
    got = result_rows(result, dims)
    assert got.keys() == cells.keys()
    for cell, rows in cells.items():
        for f in funcs:
            for v in values:
                assert num(got[cell][f"{f}_{v}"]) == pytest.approx(expected(rows, f, v), nan_ok=True)


def test_magnitude_evidence_is_per_unit_totals(pums_dup: pd.DataFrame) -> None:
    spec = {"op": "crosstab", "index": ["sex"], "columns": ["race"], "values": "income", "aggfunc": ["sum", "mean"], "margins": True}
    result = compute(spec, as_tables(pums_dup), stats_policy())
    got = result_rows(result, ["sex", "race"])
    for cell, rows in pandas_cells(pums_dup, ["sex", "race"], True).items():
        totals = rows.groupby("pid")["income"].sum().astype(float)
        for name in ("sum_income", "mean_income"):
            assert got[cell][f"__top_{name}"] == sorted(totals, reverse=True)[:2]
            assert got[cell][f"__total_{name}"] == pytest.approx(totals.sum())
            assert got[cell][f"__neg_{name}"] == int((totals < 0).sum())
            assert got[cell][f"__missing_{name}"] == 0


def test_order_statistics_carry_units_below_and_above(frame: pd.DataFrame) -> None:
    spec = {
        "op": "crosstab",
        "index": ["married"],
        "columns": ["sex"],
        "values": "income",
        "aggfunc": ["median", "min", "max"],
        "margins": True,
    }
    result = compute(spec, as_tables(frame))
    got = result_rows(result, ["married", "sex"])
    for cell, rows in pandas_cells(frame, ["married", "sex"], True).items():
        for name in ("median_income", "min_income", "max_income"):
            value = got[cell][name]
            assert got[cell][f"__below_{name}"] == rows.loc[rows["income"] <= value, "pid"].nunique()
            assert got[cell][f"__above_{name}"] == rows.loc[rows["income"] >= value, "pid"].nunique()
        assert "__top_median_income" not in got[cell]


def test_missing_values_are_counted_per_cell(pums_null: pd.DataFrame) -> None:
    spec = {"op": "crosstab", "index": ["sex"], "values": "income", "aggfunc": ["count", "mean"], "margins": True}
    result = compute(spec, as_tables(pums_null))
    got = result_rows(result, ["sex"])
    cells = pandas_cells(pums_null, ["sex"], True)
    assert got.keys() == cells.keys()  # the NULL sex group and the margin are told apart by __grouping
    for cell, rows in cells.items():
        assert got[cell]["count_income"] == rows["income"].count()
        assert got[cell]["mean_income"] == pytest.approx(rows["income"].astype(float).mean())
        assert got[cell]["__missing_mean_income"] == rows["income"].isna().sum()
        assert got[cell]["__units_0"] == rows["pid"].nunique()


@pytest.mark.parametrize("name", ["pid", "dup", "null"])
def test_describe_matches_pandas_with_evidence(request: pytest.FixtureRequest, name: str) -> None:
    frame: pd.DataFrame = request.getfixturevalue(FRAMES[name])
    result = compute({"op": "describe", "columns": ["income", "age"]}, as_tables(frame), stats_policy(age="measure"))
    oracle = frame[["income", "age"]].astype("float64").describe()
    rows = result.table.to_pylist()
    assert [row["variable"] for row in rows] == ["income", "age"]
    assert [n for n, _ in result.outputs] == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    for row in rows:
        column = frame[row["variable"]]
        for stat in oracle.index:
            assert row[stat] == pytest.approx(oracle.loc[stat, row["variable"]]), stat
        assert row["__units_0"] == frame["pid"].nunique()
        assert row["__missing_count"] == column.isna().sum()
        for stat in ("min", "25%", "50%", "75%", "max"):
            assert row[f"__below_{stat}"] == frame.loc[column <= row[stat], "pid"].nunique()
            assert row[f"__above_{stat}"] == frame.loc[column >= row[stat], "pid"].nunique()
        assert "__below_mean" not in row
        assert "__below_count" not in row


def test_describe_subset_of_statistics(pums: pd.DataFrame) -> None:
    policy = stats_policy(frozenset({Aggregate.COUNT, Aggregate.AVG}))
    result = compute({"op": "describe", "columns": ["income"], "statistics": ["mean", "count"]}, as_tables(pums), policy)
    assert [n for n, _ in result.outputs] == ["count", "mean"]
    assert result.table.to_pylist()[0]["mean"] == pytest.approx(pums["income"].mean())


QUANTILES = [
    pytest.param([], False, id="overall"),
    pytest.param(["sex"], False, id="by-sex"),
    pytest.param(["race", "married"], True, id="by-race-married-margins"),
]


@pytest.mark.parametrize(("by", "margins"), QUANTILES)
def test_quantiles_match_pandas(frame: pd.DataFrame, by: list[str], margins: bool) -> None:
    qs = [0.1, 0.5, 0.9]
    result = compute({"op": "quantiles", "column": "income", "q": qs, "by": by, "margins": margins}, as_tables(frame))
    assert [n for n, _ in result.outputs] == ["quantile_0.1", "quantile_0.5", "quantile_0.9"]
    got = result_rows(result, by)
    cells = pandas_cells(frame, by, margins)
    assert got.keys() == cells.keys()
    for cell, rows in cells.items():
        for q in qs:
            value = got[cell][f"quantile_{q:g}"]
            assert value == pytest.approx(rows["income"].quantile(q))
            assert got[cell][f"__below_quantile_{q:g}"] == rows.loc[rows["income"] <= value, "pid"].nunique()
            assert got[cell][f"__above_quantile_{q:g}"] == rows.loc[rows["income"] >= value, "pid"].nunique()


HISTOGRAMS = [
    pytest.param([0, 20, 40, 60, 80, 100], id="declared-edges"),
    pytest.param([0, 10, 18, 50, 93], id="empty-bin-and-closed-last-edge"),
    pytest.param(8, id="equal-width-over-declared-bounds"),
]


@pytest.mark.parametrize("bins", HISTOGRAMS)
def test_histogram_matches_numpy(frame: pd.DataFrame, bins: list[float] | int) -> None:
    result = compute({"op": "histogram", "column": "age", "bins": bins}, as_tables(frame))
    edges = np.linspace(0, 100, bins + 1) if isinstance(bins, int) else np.asarray(bins, dtype=float)
    counts, _ = np.histogram(frame["age"], bins=edges)
    rows = result.table.to_pylist()
    assert [r["lower"] for r in rows] == pytest.approx(edges[:-1].tolist())
    assert [r["upper"] for r in rows] == pytest.approx(edges[1:].tolist())
    assert [r["count"] for r in rows] == counts.tolist()
    ages = frame["age"]
    for i, (row, (low, high)) in enumerate(zip(rows, pairwise(edges), strict=True)):
        inside = (ages >= low) & ((ages < high) | ((ages == high) & (i == len(rows) - 1)))
        assert row["__units_0"] == frame.loc[inside, "pid"].nunique()
    assert result.dimensions == ("lower", "upper")


@pytest.mark.parametrize("name", ["pid", "dup", "null"])
def test_correlation_matches_pandas(request: pytest.FixtureRequest, name: str) -> None:
    frame: pd.DataFrame = request.getfixturevalue(FRAMES[name])
    columns = ["income", "age", "educ"]
    result = compute({"op": "correlation", "columns": columns}, as_tables(frame), stats_policy(age="measure", educ="measure"))
    oracle = frame[columns].astype("float64").corr()
    rows = result.table.to_pylist()
    assert [(r["var1"], r["var2"]) for r in rows] == [("income", "age"), ("income", "educ"), ("age", "educ")]
    for row in rows:
        a, b = row["var1"], row["var2"]
        assert row["r"] == pytest.approx(oracle.loc[a, b])
        complete = frame[[a, b]].notna().all(axis=1)
        assert row["__units_0"] == frame.loc[complete, "pid"].nunique()
        assert row["__missing_r"] == int((~complete).sum())


def test_output_control_reads_the_evidence(pums: pd.DataFrame) -> None:
    """The contract end to end: small cells (race 5 and 6) are withheld, evidence never released.

    Secondary suppression may withhold more cells; every cell under the threshold must be among them.
    """
    result = compute({"op": "crosstab", "index": ["sex"], "columns": ["race"], "margins": True}, as_tables(pums))
    outputs = [Output(name, aggregate) for name, aggregate in result.outputs]
    controlled = control(result.table, outputs, result.unit_columns, stats_policy().disclosure)
    released = controlled.released.to_pylist()
    assert not any(column.startswith("__") for column in controlled.released.column_names if column != GROUPING_COLUMN)
    for row, raw in zip(released, result.table.to_pylist(), strict=True):
        if raw["__units_0"] < 10:
            assert row["count"] is None
