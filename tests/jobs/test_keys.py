"""jobs.keys: every combination of declared key values laid out, withheld rows of undeclared keys dropped."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs import keys
from jobs.keys import KeyLayout, Ordering, complete, hide
from policies.evidence import GROUPING_COLUMN, Output
from policies.model import Aggregate
from policies.output_control import TABLE_ROW, CellStatus, Note

OUTPUTS = [Output("n", Aggregate.COUNT), Output("s", Aggregate.SUM, "income")]


def withheld(rows: list[int]) -> list[Note]:
    return [Note(i, c, CellStatus.SUPPRESS, "threshold", "few") for i in rows for c in ("n", "s")]


def test_declared_combinations_are_added_empty_and_sorted() -> None:
    table = pa.table({"race": [5, 1], "sex": [1, 0], "n": [1, 40], "s": [5.0, 9.0], "__units_0": [1, 40], "__top_s": [[5.0], [3.0]]})
    done, layout = complete(table, KeyLayout(("race", "sex"), ((1, 5), (0, 1))), OUTPUTS)
    assert layout.domains == ((1, 5), (0, 1))
    assert done.select(["race", "sex", "n", "s", "__units_0", "__top_s"]).to_pylist() == [
        {"race": 1, "sex": 0, "n": 40, "s": 9.0, "__units_0": 40, "__top_s": [3.0]},
        {"race": 1, "sex": 1, "n": 0, "s": None, "__units_0": 0, "__top_s": None},
        {"race": 5, "sex": 0, "n": 0, "s": None, "__units_0": 0, "__top_s": None},
        {"race": 5, "sex": 1, "n": 1, "s": 5.0, "__units_0": 1, "__top_s": [5.0]},
    ]


def test_the_analysts_order_comes_first() -> None:
    table = pa.table({"race": [1, 5], "n": [40, 1], "__units_0": [40, 1]})
    done, _ = complete(table, KeyLayout(("race",), ((1, 5, 6),), (Ordering("race", descending=True),)), OUTPUTS[:1])
    assert done.column("race").to_pylist() == [6, 5, 1]


def test_margins_are_laid_out_per_grouping_set() -> None:
    """Inner cells over both domains, each one-way margin over its own domain, one grand total."""
    table = pa.table(
        {"a": [1, 2, None, None], "b": [0, None, 0, None], GROUPING_COLUMN: [0, 1, 2, 3], "n": [12] * 4, "__units_0": [12] * 4}
    )
    done, _ = complete(table, KeyLayout(("a", "b"), ((1, 2), (0, 1))), OUTPUTS[:1])
    rows = [(r[GROUPING_COLUMN], r["a"], r["b"]) for r in done.to_pylist()]
    assert rows == [(0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 2, 1), (1, 1, None), (1, 2, None), (2, None, 0), (2, None, 1), (3, None, None)]


def test_an_undeclared_key_is_crossed_with_the_declared_ones_and_kept_only_when_released() -> None:
    table = pa.table({"age": [40, 40, 93], "race": [1, 5, 1], "n": [30, 1, 2], "s": [1.0, 2.0, 3.0], "__units_0": [30, 1, 2]})
    done, layout = complete(table, KeyLayout(("age", "race"), (None, (1, 5))), OUTPUTS)
    assert [(r["age"], r["race"]) for r in done.to_pylist()] == [(40, 1), (40, 5), (93, 1), (93, 5)]
    rounding = Note(TABLE_ROW, "*", CellStatus.PASS, "rounding", "")
    shown, notes = hide(done.select(["age", "race", "n", "s"]), [*withheld([1, 2, 3]), rounding], layout, ["n", "s"])
    assert [(r["age"], r["race"]) for r in shown.to_pylist()] == [(40, 1), (40, 5)]  # age 93 is in no released row
    assert {(n.row, n.column) for n in notes} == {(1, "n"), (1, "s"), (TABLE_ROW, "*")}


def test_null_of_a_declared_key_is_undeclared() -> None:
    table = pa.table({"race": [1, None], "n": [30, 2], "__units_0": [30, 2]})
    done, layout = complete(table, KeyLayout(("race",), ((1, 2),)), OUTPUTS[:1])
    assert done.column("race").to_pylist() == [1, 2, None]
    shown, _ = hide(done, withheld([1, 2]), layout, ["n"])
    assert shown.column("race").to_pylist() == [1, 2]


def test_a_layout_too_large_is_not_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "MAX_LAYOUT_ROWS", 3)
    table = pa.table({"race": [2, 1], "n": [1, 40], "__units_0": [1, 40]})
    done, layout = complete(table, KeyLayout(("race",), ((1, 2, 3, 4),)), OUTPUTS[:1])
    assert done.column("race").to_pylist() == [1, 2]
    assert layout.domains == (None,)
    shown, _ = hide(done, withheld([1]), layout, ["n"])
    assert shown.column("race").to_pylist() == [1]


def test_a_domain_that_does_not_fit_the_column_counts_as_undeclared() -> None:
    table = pa.table({"k": [1], "n": [40], "__units_0": [40]})
    done, layout = complete(table, KeyLayout(("k",), (("x", "y"),)), OUTPUTS[:1])
    assert layout.domains == (None,)
    assert done.column("k").to_pylist() == [1]


def test_a_nan_key_is_one_key() -> None:
    table = pa.table({"x": [float("nan"), 1.5], "n": [3, 40], "__units_0": [3, 40]})
    done, layout = complete(table, KeyLayout(("x",), (None,)), OUTPUTS[:1])
    assert done.num_rows == 2
    shown, _ = hide(done, withheld([1]), layout, ["n"])  # NaN sorts last: row 1 is the withheld NaN row
    assert shown.column("x").to_pylist() == [1.5]
