"""Secondary suppression's cost limits and its shortcut proofs: a huge table fails cleanly, a proof is never wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.errors import SandboxError, TooExpensive
from policies import secondary
from policies.secondary import Key, Limits, audit, protect
from tests.policies.test_secondary import K, with_margins

COUNTS = np.array([[3, 20, 25], [14, 2, 30], [22, 18, 1]])


def test_too_expensive_is_a_422_the_api_can_answer() -> None:
    assert issubclass(TooExpensive, SandboxError)
    assert (TooExpensive.code, TooExpensive.status) == ("too_expensive", 422)


def test_a_table_past_the_size_cap_is_refused_before_any_programme(monkeypatch: pytest.MonkeyPatch) -> None:
    keys, values = with_margins(COUNTS)
    monkeypatch.setattr(secondary, "relations", lambda _: pytest.fail("the size was not checked first"))
    with pytest.raises(TooExpensive) as raised:
        protect(keys, values, [0], K, limits=Limits(max_cells=len(keys) - 1))
    assert raised.value.details["max_cells"] == len(keys) - 1


def test_too_many_relations_is_refused() -> None:
    keys, values = with_margins(COUNTS)
    with pytest.raises(TooExpensive):
        audit(keys, values, [0], limits=Limits(max_relations=3))


def test_an_interrupted_audit_fails_cleanly() -> None:
    keys, values = with_margins(COUNTS)
    with pytest.raises(TooExpensive) as raised:
        audit(keys, values, [0, 1, 3, 4], limits=Limits(interrupted=lambda: True))
    assert raised.value.details == {"interrupted": True}


def test_an_audit_past_its_time_fails_cleanly() -> None:
    keys, values = with_margins(COUNTS)
    with pytest.raises(TooExpensive):
        audit(keys, values, [0, 1, 3, 4], limits=Limits(seconds=0.0))


def test_within_the_limits_the_result_is_unchanged() -> None:
    keys, values = with_margins(COUNTS)
    assert protect(keys, values, [0, 4, 8], K, limits=Limits(seconds=30.0)) == protect(keys, values, [0, 4, 8], K)


@st.composite
def suppressed_tables(draw: st.DrawFn) -> tuple[list[Key], list[float], frozenset[int]]:
    shape = tuple(draw(st.integers(2, 4)) for _ in range(draw(st.integers(2, 3))))
    keys, values = with_margins(draw(arrays(np.int64, shape, elements=st.integers(0, 30))))
    return keys, values, frozenset(draw(st.sets(st.integers(0, len(keys) - 1), min_size=2)))


@settings(max_examples=40, deadline=None)
@given(suppressed_tables())
def test_a_cube_proof_never_claims_more_than_the_audit_finds(table: tuple[list[Key], list[float], frozenset[int]]) -> None:
    """The shortcut that skips programmes: every cell a cube of suppressed cells certifies is that wide by LP."""
    keys, values, suppressed = table
    grid = secondary._Table.of(keys, values, Limits())
    exact = audit(keys, values, suppressed)
    among = grid.mask(suppressed)
    for cell in suppressed:
        cubes = grid.grid.cubes(cell, among)
        if cubes.valid.any():
            room = float(cubes.room[cubes.valid].max())
            assert exact[cell][1] - exact[cell][0] >= room * grid.scale - 1e-6


@settings(max_examples=20, deadline=None)
@given(suppressed_tables(), st.sampled_from([1.0, 5.0, 10.0]))
def test_after_protection_no_suppressed_cell_is_pinned_tighter_than_the_width(
    table: tuple[list[Key], list[float], frozenset[int]], width: float
) -> None:
    """The suppression invariant, checked by the LP audit: primaries, complements and all."""
    keys, values, primary = table
    result = protect(keys, values, primary, width)
    assert primary <= result.suppressed
    for cell, (low, high) in audit(keys, values, result.suppressed).items():
        assert high - low >= width - 1e-6 * max(*values, 1.0), keys[cell]


@settings(max_examples=40, deadline=None)
@given(suppressed_tables(), st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0]))
def test_the_shortcut_answer_is_the_exact_one(table: tuple[list[Key], list[float], frozenset[int]], width: float) -> None:
    """``wide_enough`` answers from tables seen and one side solved when it can: always as the full interval would."""
    keys, values, suppressed = table
    grid = secondary._Table.of(keys, values, Limits())
    need = width / grid.scale
    quick, exact = grid.audit(suppressed, True), grid.audit(suppressed, True)
    for cell in sorted(suppressed):
        low, high = exact.interval(cell)
        assert quick.wide_enough(cell, need) == (high - low >= need - 1e-7)
