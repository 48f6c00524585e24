"""The hypercubes of ``policies.cubes`` against a direct enumeration over the keys, cube by cube and in order."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies import cubes, secondary
from policies.cubes import CUBE_CHOICES
from policies.secondary import Key, Limits
from tests.policies.test_secondary import with_margins


def direct_cubes(table: secondary._Table, cell: int, among: frozenset[int] | None) -> list[tuple[dict[int, int], float]]:
    """Every cube through ``cell`` as corner -> sign and its room, by walking keys (the definition, slowly)."""
    keys = table.keys
    index = {key: i for i, key in enumerate(keys)}
    domains = [list(dict.fromkeys(key[j] for key in keys if key[j] is not None)) for j in range(len(keys[cell]))]
    key = keys[cell]
    options = []
    for j in range(len(key)):
        found: list[Hashable | None] = [a for a in domains[j] if a != key[j]] + ([None] if key[j] is not None else [])
        neighbour = {a: index[k] for a in found if (k := (*key[:j], a, *key[j + 1 :])) in index}
        if among is not None:
            neighbour = {a: c for a, c in neighbour.items() if c in among}
        sign = 1.0 if among is None else -1.0
        options.append(sorted(neighbour, key=lambda a: sign * float(table.values[neighbour[a]]))[:CUBE_CHOICES])
    cubes = []
    for alternative in itertools.product(*options):
        corners: dict[int, int] = {}
        for picks in itertools.product((False, True), repeat=len(key)):
            corner = index.get(tuple(a if pick else k for k, a, pick in zip(key, alternative, picks, strict=True)))
            if corner is None or (among is not None and corner not in among):
                break
            flips = sum(1 for k, a, pick in zip(key, alternative, picks, strict=True) if pick and k is not None and a is not None)
            corners[corner] = -1 if flips % 2 else 1
        else:
            up = min(table.values[c] for c, s in corners.items() if s > 0)
            down = min((table.values[c] for c, s in corners.items() if s < 0), default=math.inf)
            cubes.append((corners, float(up + down)))
    return cubes


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Key], list[float], frozenset[int]]:
    """Count tables with margins, some cells dropped (empty groups), and a random set of suppressed cells."""
    shape = tuple(draw(st.integers(1, 10 if d == 0 else 3)) for d in range(draw(st.integers(1, 3))))
    keys, values = with_margins(draw(arrays(np.int64, shape, elements=st.integers(0, 30))))
    dropped = draw(st.sets(st.integers(0, len(keys) - 1), max_size=len(keys) // 4))
    kept = [i for i in range(len(keys)) if i not in dropped]
    among = draw(st.sets(st.sampled_from(range(len(kept))), min_size=1))
    return [keys[i] for i in kept], [values[i] for i in kept], frozenset(among)


@pytest.mark.parametrize("dense", [True, False], ids=["dense_lookup", "prefix_lookup"])
@settings(max_examples=30, deadline=None)
@given(table=tables())
def test_the_cubes_are_those_of_the_definition(dense: bool, table: tuple[list[Key], list[float], frozenset[int]]) -> None:
    keys, values, among = table
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cubes, "DENSE_CELLS", cubes.DENSE_CELLS if dense else 0)
        grid = secondary._Table.of(keys, values, Limits())
    assert (grid.grid.dense is not None) == dense
    for cell in range(len(keys)):
        for within in (None, among):
            found = grid.grid.cubes(cell, None if within is None else grid.mask(within))
            rows = np.flatnonzero(found.valid)
            listed = [
                ({int(c): -1 if n else 1 for c, n in zip(found.corners[r], found.negative[r], strict=True)}, float(found.room[r]))
                for r in rows
            ]
            assert listed == direct_cubes(grid, cell, within)


@settings(max_examples=25, deadline=None)
@given(tables(), st.sampled_from([0.0, 0.05, 0.2, 0.5]))
def test_the_chosen_and_the_certifying_cube_are_the_first_fitting_ones(
    table: tuple[list[Key], list[float], frozenset[int]], need: float
) -> None:
    """``cheapest``: least new value, then least depth, then the first; ``certificate``: the first of ``among`` that fits."""
    keys, values, among = table
    grid = secondary._Table.of(keys, values, Limits())
    depth = [sum(1 for k in key if k is None) for key in keys]
    for cell in range(len(keys)):
        fitting = [corners for corners, room in direct_cubes(grid, cell, None) if room >= need]
        costs = [(sum(float(grid.values[c]) for c in corners if c not in among), sum(depth[c] for c in corners)) for corners in fitting]
        expected = frozenset(fitting[costs.index(min(costs))]) if fitting else frozenset()
        assert grid.grid.cheapest(cell, grid.mask(among), need) == expected
        first = next((corners for corners, room in direct_cubes(grid, cell, among) if room >= need), None)
        assert grid.grid.certificate(cell, grid.mask(among), need) == (None if first is None else frozenset(first))


def test_a_sparse_table_over_huge_domains_costs_memory_for_its_cells_only() -> None:
    """Four dimensions of 2,000 values each, 4,000 cells: a dense grid would need 1.6 * 10**13 entries."""
    n = 2_000
    keys: list[Key] = [(i, (i * 7) % n, (i * 13) % n, (i * 31) % n) for i in range(n)]
    keys += [(None, *key[1:]) for key in keys]  # each cell with its margin over the first dimension
    values = [3.0] * n + [3.0] * n
    grid = secondary._Table.of(keys, values, Limits())
    assert grid.grid.dense is None
    found = grid.grid.cubes(0, None)
    assert [set(c) for c in found.corners[found.valid]] == []  # no cube: the margin has one part only
    found = grid.grid.find([np.array([0, 1]), np.array([0, 7]), np.array([0, 13]), np.array([0, n - 1])])
    assert found.tolist() == [0, -1]
    assert secondary.protect(keys, values, [0], 2.0).suppressed == {0, n}  # pinned to its margin: withheld with it
