"""control(): every registered rule by default, withholding, secondary suppression of margins, rounding."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from acro.table_utils import round_table
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies.evidence import GROUPING_COLUMN, Output, top_column, total_column
from policies.model import Aggregate, Disclosure
from policies.output_control import TABLE_ROW, CellStatus, Controlled, Note, Verdict, control, worst
from policies.secondary import Key, audit
from tests.conftest import data_file

N = Output("n", Aggregate.COUNT)
TOTAL = Output("total", Aggregate.SUM)
MEAN = Output("mean", Aggregate.AVG)


def result(rows: list[dict[str, Any]], schema: dict[str, pa.DataType] | None = None) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    types = schema or {}
    return pa.table({name: pa.array(values, types.get(name)) for name, values in columns.items()})


def test_the_old_call_still_works_and_runs_every_rule() -> None:
    table = result(
        [
            {"g": "a", "n": 40, "total": 1000.0, "__units_0": 40, top_column("total"): [950.0, 10.0], total_column("total"): 1000.0},
            {"g": "b", "n": 30, "total": 900.0, "__units_0": 30, top_column("total"): [60.0, 50.0], total_column("total"): 900.0},
            {"g": "c", "n": 4, "total": 80.0, "__units_0": 4, top_column("total"): [30.0, 20.0], total_column("total"): 80.0},
        ]
    )
    controlled = control(table, [N, TOTAL], ["__units_0"], Disclosure())
    assert isinstance(controlled, Controlled)
    assert controlled.released.column_names == ["g", "n", "total"]
    assert controlled.released.column("n").to_pylist() == [40, 30, None]
    assert controlled.released.column("total").to_pylist() == [None, 900.0, None]  # a: dominated by one unit
    rules = {(n.row, n.column): n.rule for n in controlled.notes}
    assert rules == {(0, "total"): "nk_dominance", (2, "n"): "threshold", (2, "total"): "threshold"}
    assert (controlled.cells, controlled.suppressed, controlled.status) == (6, 3, CellStatus.SUPPRESS)
    assert (controlled.rounded, controlled.complements) == (False, 0)

    only_threshold = control(table, [N, TOTAL], ["__units_0"], Disclosure(), rules=["threshold"])
    assert only_threshold.released.column("total").to_pylist() == [1000.0, 900.0, None]


def test_notes_carry_evidence_for_auditors_only() -> None:
    table = result([{"g": "a", "n": 3, "__units_0": 3}, {"g": "b", "n": 50, "__units_0": 50}])
    note = control(table, [N], ["__units_0"], Disclosure()).notes[0]
    assert note.evidence == {"units": 3, "threshold": 10}
    assert "evidence" not in note.as_dict()
    assert note.for_auditor()["evidence"] == {"units": 3, "threshold": 10}


def test_no_rules_means_review_and_an_unknown_rule_is_an_error() -> None:
    table = result([{"g": "a", "n": 50, "__units_0": 50}])
    assert control(table, [N], ["__units_0"], Disclosure(), rules=[]).status is CellStatus.REVIEW
    with pytest.raises(KeyError):
        control(table, [N], ["__units_0"], Disclosure(), rules=["no_such_rule"])


def test_nothing_releasable_blocks() -> None:
    table = result([{"g": "a", "n": 2, "__units_0": 2}])
    controlled = control(table, [N], ["__units_0"], Disclosure(rounding=True))
    assert controlled.status is CellStatus.BLOCK
    assert not controlled.rounded


def test_reexports() -> None:
    assert worst([]) is CellStatus.REVIEW
    assert Verdict(CellStatus.PASS, "r", "why").evidence == {}
    assert Note(0, "n", CellStatus.SUPPRESS, "threshold", "why").as_dict()["status"] == "suppress"


COUNTS = [12, 13, 15, 25, 35, 45, 7, 105]


@pytest.mark.parametrize("base", [5, 10], ids=["base_5", "base_10"])
def test_rounding_matches_acros_round_table(base: int) -> None:
    rows = [{"g": str(i), "n": v, "mean": 1 / 3, "__units_0": 200, "__count_mean": v, "__sum_mean": v / 3} for i, v in enumerate(COUNTS)]
    controlled = control(result(rows), [N, MEAN], ["__units_0"], Disclosure(rounding=True, round_base=base))
    acro = round_table(pd.DataFrame({"n": COUNTS}), base)["n"].tolist()
    assert controlled.released.column("n").to_pylist() == acro
    assert controlled.released.column("n").type == pa.int64()
    sums = round_table(pd.DataFrame({"s": [v / 3 for v in COUNTS]}), base)["s"].tolist()
    assert controlled.released.column("mean").to_pylist() == [s / n if n else None for s, n in zip(sums, acro, strict=True)]
    assert controlled.rounded
    assert controlled.summary()["rounded"] is True
    table_notes = [n for n in controlled.notes if n.row == TABLE_ROW]
    assert len(table_notes) == 1
    assert table_notes[0].status is CellStatus.PASS
    assert f"multiple of {base}" in table_notes[0].reason


def test_rounding_comes_after_suppression_and_keeps_decimal_totals() -> None:
    rows = [
        {"g": "a", "n": 3, "total": Decimal("17.25"), "__units_0": 3},
        {"g": "b", "n": 52, "total": Decimal("1234.50"), "__units_0": 52},
    ]
    table = result(rows, {"total": pa.decimal128(18, 2)})
    controlled = control(table, [N, TOTAL], ["__units_0"], Disclosure(rounding=True, round_base=5))
    assert controlled.released.column("n").to_pylist() == [None, 50]
    assert controlled.released.column("total").to_pylist() == [None, Decimal("1235.00")]
    assert controlled.released.column("total").type == pa.decimal128(18, 2)
    assert controlled.suppressed == 2


def rounded_to(value: float, base: int) -> float:
    return float(round(value / base) * base)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=12, max_size=200), st.sampled_from([3, 5, 10]))
def test_a_mean_of_ones_and_zeros_gives_no_exact_count(values: list[int], base: int) -> None:
    """AVG of a 0/1 column beside a rounded count: released, it is R(ones) / R(n), never ones / n."""
    n, ones = len(values), sum(values)
    row = {"n": n, "mean": ones / n, "__units_0": n, "__count_mean": n, "__sum_mean": float(ones)}
    released = control(
        result([row]), [N, MEAN], ["__units_0"], Disclosure(rounding=True, round_base=base, threshold=1, zeros_disclosive=False)
    ).released
    count, mean = released.column("n").to_pylist()[0], released.column("mean").to_pylist()[0]
    assert count == rounded_to(n, base)
    assert mean == (rounded_to(ones, base) / count if count else None)
    if mean is not None:
        assert round(mean * count) % base == 0  # the mean and the count give back a rounded total only


def test_spreads_come_from_rounded_sums_and_min_max_are_rounded() -> None:
    values = [1.0, 2.0, 2.0, 3.0, 7.0, 1.0, 4.0, 4.0, 5.0, 9.0, 2.0, 3.0, 8.0]
    n, total, squares = len(values), sum(values), sum(v * v for v in values)
    row: dict[str, Any] = {"sd": float(np.std(values, ddof=1)), "var": float(np.var(values, ddof=1)), "lo": 1.0, "hi": 9.0, "__units_0": n}
    row |= {"__below_lo": n, "__above_lo": n, "__below_hi": n, "__above_hi": n}
    for name in ("sd", "var"):
        row |= {f"__count_{name}": n, f"__sum_{name}": total, f"__sumsq_{name}": squares}
    outputs = [Output("sd", Aggregate.STDDEV), Output("var", Aggregate.VARIANCE), Output("lo", Aggregate.MIN), Output("hi", Aggregate.MAX)]
    released = control(result([row]), outputs, ["__units_0"], Disclosure(rounding=True, round_base=5, threshold=1)).released
    rn, rs, rq = rounded_to(n, 5), rounded_to(total, 5), rounded_to(squares, 5)
    variance = (rq - rs * rs / rn) / (rn - 1)
    assert released.column("var").to_pylist() == [pytest.approx(variance)]
    assert released.column("sd").to_pylist() == [pytest.approx(variance**0.5)]
    assert (released.column("lo").to_pylist(), released.column("hi").to_pylist()) == ([0.0], [10.0])


@pytest.mark.parametrize("aggregate", [Aggregate.MEDIAN, Aggregate.QUANTILE, Aggregate.AVG, Aggregate.STDDEV])
def test_what_cannot_be_derived_from_rounded_numbers_is_withheld(aggregate: Aggregate) -> None:
    """A quantile's position gives counts whatever its value; a mean without its components would be exact."""
    rows = [{"g": g, "n": n, "x": x, "__units_0": n, "__below_x": n, "__above_x": n} for g, n, x in [("a", 40, 0.375), ("b", 41, 0.5)]]
    controlled = control(result(rows), [N, Output("x", aggregate)], ["__units_0"], Disclosure(rounding=True))
    assert controlled.released.column("x").to_pylist() == [None, None]
    assert controlled.released.column("n").to_pylist() == [40, 40]
    assert {(n.row, n.rule) for n in controlled.notes if n.column == "x"} == {(0, "rounding"), (1, "rounding")}
    assert controlled.status is CellStatus.SUPPRESS


def test_rounding_off_leaves_values() -> None:
    rows = [{"g": "a", "n": 13, "__units_0": 13}]
    controlled = control(result(rows), [N], ["__units_0"], Disclosure())
    assert controlled.released.column("n").to_pylist() == [13]
    assert not controlled.rounded
    assert controlled.notes == ()


CUBE_SQL = """
SELECT educ, race, COUNT(*) AS n, AVG(income) AS mean_income, COUNT(DISTINCT pid) AS __units_0, GROUPING(educ, race) AS __grouping
FROM pums GROUP BY CUBE (educ, race) ORDER BY __grouping, educ, race
"""


@pytest.fixture(scope="module")
def pums_cube() -> pa.Table:
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    with duckdb.connect() as con:
        con.register("pums", pums)
        return con.sql(CUBE_SQL).to_arrow_table()


def cube_keys(table: pa.Table) -> list[Key]:
    educ, race = table.column("educ").to_pylist(), table.column("race").to_pylist()
    grouping = table.column(GROUPING_COLUMN).to_pylist()
    return [(None if g & 2 else (e,), None if g & 1 else (r,)) for e, r, g in zip(educ, race, grouping, strict=True)]


def exposed_counts(original: pa.Table, controlled: Controlled) -> dict[int, float]:
    """The audit an analyst could run on the released counts and margins: each withheld count's width."""
    values = [float(v) for v in original.column("n").to_pylist()]
    withheld = [i for i, v in enumerate(controlled.released.column("n").to_pylist()) if v is None]
    return {cell: hi - lo for cell, (lo, hi) in audit(cube_keys(original), values, withheld).items()}


def test_margins_are_protected_by_complements(pums_cube: pa.Table) -> None:
    outputs = [N, Output("mean_income", Aggregate.AVG)]
    controlled = control(pums_cube, outputs, ["__units_0"], Disclosure())
    assert controlled.complements > 0
    assert min(exposed_counts(pums_cube, controlled).values()) >= 10 - 1e-6
    complement_rows = {n.row for n in controlled.notes if n.rule == "secondary_suppression"}
    assert complement_rows
    released = controlled.released
    for row in complement_rows:  # a complement withholds its whole row: mean x count would give a total back
        assert released.column("n")[row].as_py() is None
        assert released.column("mean_income")[row].as_py() is None
    assert GROUPING_COLUMN not in released.column_names


def test_without_secondary_suppression_margins_give_cells_away(pums_cube: pa.Table) -> None:
    controlled = control(pums_cube, [N], ["__units_0"], Disclosure(secondary_suppression=False))
    assert controlled.complements == 0
    assert min(exposed_counts(pums_cube, controlled).values()) == pytest.approx(0)


@st.composite
def grouped_counts(draw: st.DrawFn) -> pa.Table:
    """A GROUP BY CUBE result as DuckDB returns it: empty groups absent, margins flagged in ``__grouping``."""
    counts = draw(arrays(np.int64, (draw(st.integers(2, 3)), draw(st.integers(2, 4))), elements=st.integers(0, 20)))
    counts = counts.copy()
    counts[0, 0] += 1  # never an empty table
    rows = []
    for a, b in itertools.product([*range(counts.shape[0]), None], [*range(counts.shape[1]), None]):
        n = int(counts[slice(None) if a is None else a, slice(None) if b is None else b].sum())
        if n:
            grouping = (2 if a is None else 0) | (1 if b is None else 0)
            rows.append({"educ": None if a is None else f"e{a}", "race": b, "n": n, "__units_0": n, GROUPING_COLUMN: grouping})
    return result(rows, {"race": pa.int64()})


@settings(max_examples=20, deadline=None)
@given(grouped_counts())
def test_control_withholds_small_cells_changes_nothing_else_and_protects_margins(table: pa.Table) -> None:
    controlled = control(table, [N], ["__units_0"], Disclosure(threshold=5))
    released = controlled.released
    assert released.select(["educ", "race"]).equals(table.select(["educ", "race"]))
    for units, original, shown in zip(
        table.column("__units_0").to_pylist(), table.column("n").to_pylist(), released.column("n").to_pylist(), strict=True
    ):
        assert shown is None or shown == original  # a released cell is the true cell
        assert units >= 5 or shown is None  # a primary is always withheld
    if any(v is None for v in released.column("n").to_pylist()):
        assert min(exposed_counts(table, controlled).values()) >= 5 - 1e-6
