"""The release audit's rules on populations as bitmaps: pairs, unions, combinations, and the size cap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from policies.audit import BULK, Decision, History, Rule, Span, audit

K = 3


def pop(*units: int) -> BitMap:
    return BitMap(units)


def span_of(units: range) -> BitMap:
    return BitMap(units)


def released(*jobs: tuple[str, list[BitMap]]) -> History:
    history = History()
    for job_id, cells in jobs:
        history.record(job_id, cells)
    return history


def rules(decision: Decision) -> dict[int, Rule]:
    return {f.row: f.rule for f in decision.findings}


def test_a_cell_one_unit_away_from_an_earlier_one_is_withheld() -> None:
    history = released(("total", [span_of(range(100))]))
    decision = audit(history, "new", {0: span_of(range(1, 100))}, K)
    assert decision.kept == ()
    assert rules(decision) == {0: Rule.PAIR}
    assert decision.findings[0].earlier_job == "total"


@pytest.mark.parametrize("units", [range(100), range(3, 100), range(50)], ids=["same", "k_away", "far"])
def test_cells_the_same_or_k_units_away_are_kept(units: range) -> None:
    history = released(("total", [span_of(range(100))]))
    assert audit(history, "new", {0: span_of(units)}, K).kept == (0,)


def test_a_partition_that_completes_an_earlier_cell_but_one_unit_is_withheld() -> None:
    """The total, then a partition of everyone but unit 0: their union differs from the total by one unit."""
    history = released(("total", [span_of(range(100))]))
    decision = audit(history, "partition", {0: span_of(range(1, 50)), 1: span_of(range(50, 100))}, K)
    assert decision.kept == ()
    assert set(rules(decision).values()) == {Rule.UNION}


def test_a_cell_one_unit_away_from_an_earlier_releases_union_is_withheld() -> None:
    """A partition first, then the total of everyone but unit 0."""
    history = released(("partition", [span_of(range(50)), span_of(range(50, 100))]))
    decision = audit(history, "total", {0: span_of(range(1, 100))}, K)
    assert rules(decision) == {0: Rule.UNION}


def test_a_plus_b_minus_c_over_three_releases_is_withheld() -> None:
    """A = X + t, B = Y, C = X + Y: A + B - C is t's value, though every pair differs by many units."""
    x, y, t = span_of(range(1, 40)), span_of(range(40, 90)), 0
    history = released(("a", [x | pop(t)]), ("b", [y]))
    decision = audit(history, "c", {0: x | y}, K)
    assert rules(decision) == {0: Rule.COMBINATION}
    assert decision.kept == ()


def test_a_tracker_over_four_releases_is_withheld() -> None:
    """Q(C or T) + Q(C or not T) - Q(T) - Q(not T) is C's value."""
    t, not_t, c = span_of(range(1, 50)), span_of(range(50, 100)), pop(0)
    history = released(("c_or_t", [c | t]), ("c_or_not_t", [c | not_t]), ("t", [t]))
    decision = audit(history, "not_t", {0: not_t}, K)
    assert rules(decision) == {0: Rule.PAIR}  # a tracker's last query always differs from one by |C| units


def test_overlapping_releases_that_isolate_nobody_are_kept() -> None:
    """Margins of a 2 x 2 table of 25 units each, then its inner cells: every combination holds >= 25 units."""
    cells = {(i, j): span_of(range(50 * i + 25 * j, 50 * i + 25 * j + 25)) for i in range(2) for j in range(2)}
    rows = [cells[(i, 0)] | cells[(i, 1)] for i in range(2)]
    columns = [cells[(0, j)] | cells[(1, j)] for j in range(2)]
    history = released(("rows", rows), ("columns", columns))
    decision = audit(history, "inner", dict(enumerate(cells.values())), K)
    assert decision.kept == (0, 1, 2, 3)
    assert decision.findings == ()


def test_above_the_cap_the_audit_refuses_instead_of_computing() -> None:
    history = released(("a", [span_of(range(0, 50))]), ("b", [span_of(range(25, 75))]))
    decision = audit(history, "c", {0: span_of(range(60, 100))}, K, cap=4)
    assert decision.kept == ()
    assert rules(decision) == {0: Rule.TOO_LARGE}
    assert audit(history, "c", {0: span_of(range(60, 100))}, K).kept == (0,)


def _pinned_or_isolated(cells: list[BitMap], universe: int, k: int) -> bool:
    """Brute force over tiny universes: some nonzero combination of the cells is supported on fewer than k units.

    Every support of size < k is tried: the combination exists iff the span holds a vector supported
    inside that set, i.e. the span restricted to the other units loses rank.
    """
    if not cells:
        return False
    matrix = np.array([[1.0 if u in c else 0.0 for u in range(universe)] for c in cells])
    rank = np.linalg.matrix_rank(matrix)
    for size in range(1, k):
        for support in itertools.combinations(range(universe), size):
            outside = [u for u in range(universe) if u not in support]
            if np.linalg.matrix_rank(matrix[:, outside]) < rank if outside else rank > 0:
                return True
    return False


cell = st.frozensets(st.integers(0, 7), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(cell, min_size=1, max_size=3), min_size=1, max_size=4))
def test_what_the_audit_keeps_never_isolates_fewer_than_k_units(releases: list[list[frozenset[int]]]) -> None:
    """Soundness: after any sequence of releases over 8 units, the kept cells' span isolates no set of fewer than k units."""
    history, kept = History(), list[BitMap]()
    for number, cells in enumerate(releases):
        populations = {row: BitMap(c) for row, c in enumerate(cells)}
        decision = audit(history, f"job{number}", populations, K)
        chosen = [populations[row] for row in decision.kept]
        history.record(f"job{number}", chosen, decision.span if chosen else None)
        kept += chosen
    assert not _pinned_or_isolated(kept, 8, K)


def _projector(span: Span, universe: int) -> np.ndarray:
    """The orthogonal projector onto the span, in unit coordinates: independent of the atoms' order and the basis chosen."""
    on_units = np.zeros((span.basis.shape[0], universe))
    for j, atom in enumerate(span.atoms):
        for unit in atom:
            on_units[:, unit] = span.basis[:, j] / np.sqrt(len(atom))
    return on_units.T @ on_units


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.frozensets(st.integers(0, 39), max_size=40), max_size=5),
    st.lists(st.frozensets(st.integers(0, 47), max_size=48), min_size=BULK, max_size=BULK + 20),
)
def test_many_cells_added_at_once_give_the_span_added_one_by_one(earlier: list[frozenset[int]], many: list[frozenset[int]]) -> None:
    """The bulk refinement (a cold start) gives the same atoms and span as adding each cell in turn."""
    at_once, one_by_one = Span(), Span()
    for cells in ([BitMap(c) for c in earlier], [BitMap(c) for c in many]):
        at_once.add(cells)
        for cell in cells:
            one_by_one.add([cell])
    assert sorted(map(list, at_once.atoms)) == sorted(map(list, one_by_one.atoms))
    assert at_once.covered == one_by_one.covered
    assert at_once.basis.shape[0] == one_by_one.basis.shape[0]
    np.testing.assert_allclose(_projector(at_once, 48), _projector(one_by_one, 48), atol=1e-8)
    for k in (2, 3, 5):
        assert at_once.isolates(k) == one_by_one.isolates(k)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.lists(st.frozensets(st.integers(0, 30), min_size=1), min_size=1, max_size=3)), max_size=60),
    st.lists(st.integers(1, 4), min_size=1, max_size=60),
)
def test_cells_and_unions_near_a_size_whatever_batches_they_were_recorded_in(
    releases: list[tuple[int, list[frozenset[int]]]], batches: list[int]
) -> None:
    """The size indexes (items inserted one by one or re-sorted) find the same earlier cells and unions as one pass over all."""
    as_bitmaps = [(f"job{job}", [BitMap(c) for c in cells]) for job, cells in releases]
    at_once, in_batches, start = History(), History(), 0
    at_once.record_many(as_bitmaps)
    for size in itertools.cycle(batches):
        if start >= len(as_bitmaps):
            break
        batch = as_bitmaps[start : start + size]
        if len(batch) == 1:
            in_batches.record(*batch[0])
        else:
            in_batches.record_many(batch)
        start += size
    for size in range(0, 32):
        for near in (History.near, History.near_unions):
            found = {(r.job_id, tuple(r.population)) for r in near(in_batches, size, K)}
            assert found == {(r.job_id, tuple(r.population)) for r in near(at_once, size, K)}
