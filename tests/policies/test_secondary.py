"""Secondary suppression: the relations of a table with margins, the LP audit, and complement choice."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies.secondary import InconsistentTable, Key, Relation, TableError, audit, protect, relations
from tests.conftest import data_file

K = 10


def with_margins(counts: np.ndarray) -> tuple[list[Key], list[float]]:
    """Every cell of a d-dimensional count array and every margin, in long form (``None`` = "All")."""
    keys: list[Key] = []
    values: list[float] = []
    for key in itertools.product(*[[*range(n), None] for n in counts.shape]):
        index = tuple(slice(None) if k is None else k for k in key)
        keys.append(key)
        values.append(float(np.sum(counts[index])))
    return keys, values


def widths(intervals: dict[int, tuple[float, float]]) -> dict[int, float]:
    return {cell: hi - lo for cell, (lo, hi) in intervals.items()}


def at(keys: list[Key], *key: Any) -> int:
    return keys.index(tuple(key))


SMALL = np.array([[3, 7], [6, 4]])


def test_relations_of_a_two_way_table() -> None:
    keys, _ = with_margins(SMALL)
    found = {(keys[r.total], tuple(sorted(keys[p] for p in r.parts if p is not None))) for r in relations(keys)}
    assert (keys[at(keys, 0, None)], ((0, 0), (0, 1))) in found  # a row margin
    assert (keys[at(keys, None, 1)], ((0, 1), (1, 1))) in found  # a column margin
    assert len(found) == 2 + 2 + 2  # rows, columns, and the grand total both ways


def test_relations_take_only_cells_present() -> None:
    keys: list[Key] = [("a", "x"), ("a", None)]  # ("a", "y") was an empty group
    assert relations(keys) == [Relation(1, (0,))]


def test_a_lone_suppressed_cell_is_recovered_by_subtraction() -> None:
    keys, values = with_margins(SMALL)
    cell = at(keys, 0, 0)
    assert audit(keys, values, [cell])[cell] == pytest.approx((3.0, 3.0))


def test_a_suppressed_rectangle_leaves_the_known_intervals() -> None:
    keys, values = with_margins(SMALL)
    cells = [at(keys, i, j) for i in range(2) for j in range(2)]
    found = audit(keys, values, cells)
    assert [tuple(round(v, 6) for v in found[c]) for c in cells] == [(0, 9), (1, 10), (0, 9), (1, 10)]


def test_without_the_nonnegative_bound_a_rectangle_is_unbounded() -> None:
    keys, values = with_margins(SMALL)
    cells = [at(keys, i, j) for i in range(2) for j in range(2)]
    assert all(interval == (-math.inf, math.inf) for interval in audit(keys, values, cells, nonnegative=False).values())


def test_a_table_without_margins_has_nothing_to_protect() -> None:
    keys: list[Key] = [("a",), ("b",)]
    result = protect(keys, [3.0, 40.0], [0], K)
    assert result.complements == frozenset()
    assert audit(keys, [3.0, 40.0], result.suppressed) == {0: (0.0, math.inf)}


def test_a_suppressed_total_is_one_more_unknown() -> None:
    keys, values = with_margins(np.array([[2, 30, 25], [40, 35, 50], [20, 45, 60]]))
    primary = [at(keys, 0, 0), at(keys, 0, None)]  # the cell, and its row total is small enough to be primary too
    assert min(widths(audit(keys, values, primary)).values()) == 0  # column 0 still gives the cell away
    result = protect(keys, values, primary, K)
    assert result.complements
    assert min(widths(audit(keys, values, result.suppressed)).values()) >= K - 1e-6


def test_three_way_table() -> None:
    counts = np.arange(1, 19).reshape(2, 3, 3) * 3
    counts[0, 1, 2] = 2
    keys, values = with_margins(counts)
    primary = [at(keys, 0, 1, 2)]
    result = protect(keys, values, primary, K)
    assert len(result.complements) >= 3  # a cell of a 3-way table sits in three relations at least
    assert min(widths(audit(keys, values, result.suppressed)).values()) >= K - 1e-6


def test_information_loss_counts_complements_against_the_grand_total() -> None:
    keys, values = with_margins(SMALL * 10)
    primary = [at(keys, 0, 0)]
    result = protect(keys, values, primary, K)
    lost = sum(values[c] for c in result.complements)
    assert result.information_loss == {"cells": len(result.complements), "value": lost, "share": lost / 200}


def test_inconsistent_margins_are_refused() -> None:
    keys, values = with_margins(SMALL)
    values[at(keys, 0, None)] += 1
    with pytest.raises(InconsistentTable):
        audit(keys, values, [at(keys, 0, 0), at(keys, 0, 1)])


BAD = [
    pytest.param([(1, 2), (1,)], [1.0, 1.0], [0], id="keys_of_different_lengths"),
    pytest.param([(1,), (1,)], [1.0, 1.0], [0], id="repeated_key"),
    pytest.param([(1,), (2,)], [1.0, math.nan], [0], id="value_not_finite"),
    pytest.param([(1,), (2,)], [1.0], [0], id="fewer_values_than_keys"),
    pytest.param([(1,), (2,)], [1.0, 2.0], [2], id="index_out_of_range"),
    pytest.param([(1,), (2,)], [1.0, 2.0], [True], id="flags_instead_of_indices"),
]


@pytest.mark.parametrize(("keys", "values", "cells"), BAD)
def test_malformed_tables_are_refused(keys: list[Key], values: list[float], cells: list[int]) -> None:
    with pytest.raises(TableError):
        audit(keys, values, cells)


def test_protection_width_must_be_a_number() -> None:
    keys, values = with_margins(SMALL)
    with pytest.raises(TableError):
        protect(keys, values, [0], -1.0)


@st.composite
def count_tables(draw: st.DrawFn, dims: int, largest: int) -> tuple[list[Key], list[float], list[int]]:
    """A random count table with margins; primaries are the cells (margins too) below 5, and one more."""
    shape = tuple(draw(st.integers(2, largest)) for _ in range(dims))
    counts = draw(arrays(np.int64, shape, elements=st.integers(0, 30)))
    keys, values = with_margins(counts)
    extra = draw(st.integers(0, len(keys) - 1))
    return keys, values, sorted({i for i, v in enumerate(values) if v < 5} | {extra})


def check_protection(keys: list[Key], values: list[float], primary: list[int], width: float) -> None:
    before = list(values)
    result = protect(keys, values, primary, width)
    assert values == before  # nothing published is altered
    assert set(primary) <= result.suppressed  # a primary is always suppressed
    assert result.complements == result.suppressed - set(primary)
    assert result.information_loss["cells"] == len(result.complements)
    found = audit(keys, values, result.suppressed)
    assert found.keys() == result.suppressed
    tolerance = 1e-6 * max(values)
    for cell, (lo, hi) in found.items():
        assert hi - lo >= width - tolerance, (keys[cell], lo, hi)
        assert lo - tolerance <= values[cell] <= hi + tolerance  # the truth is always feasible


@settings(max_examples=25, deadline=None)
@given(count_tables(dims=2, largest=4))
def test_protect_covers_every_suppressed_cell_two_way(table: tuple[list[Key], list[float], list[int]]) -> None:
    check_protection(*table, width=5.0)


@settings(max_examples=15, deadline=None)
@given(count_tables(dims=3, largest=3))
def test_protect_covers_every_suppressed_cell_three_way(table: tuple[list[Key], list[float], list[int]]) -> None:
    check_protection(*table, width=5.0)


@settings(max_examples=25, deadline=None)
@given(count_tables(dims=2, largest=4), st.data())
def test_audit_intervals_contain_the_truth(table: tuple[list[Key], list[float], list[int]], data: st.DataObject) -> None:
    keys, values, _ = table
    suppressed = data.draw(st.sets(st.integers(0, len(keys) - 1), min_size=1))
    for cell, (lo, hi) in audit(keys, values, suppressed).items():
        assert lo - 1e-6 <= values[cell] <= hi + 1e-6


def pums_educ_by_race() -> tuple[list[Key], list[float]]:
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    table = pd.crosstab(pums["educ"], pums["race"], margins=True)  # zeros stay: they are cells, and disclosive
    keys = [(None if e == "All" else e, None if r == "All" else r) for e in table.index for r in table.columns]
    return keys, [float(table.loc[e, r]) for e in table.index for r in table.columns]


def test_pums_education_by_race(record_property: Any) -> None:
    keys, values = pums_educ_by_race()
    primary = [i for i, v in enumerate(values) if v < K]  # under the threshold, zeros included, margins included
    exposed = widths(audit(keys, values, primary))
    assert min(exposed.values()) == 0  # without complements some primaries come back by subtraction
    assert sum(1 for w in exposed.values() if w < K) > 0

    result = protect(keys, values, primary, K)
    protected = widths(audit(keys, values, result.suppressed))
    assert min(protected.values()) >= K - 1e-6
    assert result.suppressed >= set(primary)
    loss = result.information_loss
    assert 0 < loss["cells"] < len(keys) - len(primary)
    assert 0 < loss["share"] < 1
    record_property("information_loss", loss)
    print(f"PUMS educ x race, k={K}: {len(primary)} primaries, complements {loss}")  # shown with -s: the figure is the point
