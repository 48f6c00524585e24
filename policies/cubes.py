"""Hypercubes of cells through a cell of a table with margins: the moves that keep every relation, as arrays.

A cube through a cell pairs, in every dimension, the cell's coordinate with an alternative: another
category (the two move in opposite directions) or, between a margin and a category, the two move
together. Moving its 2**d corners by +t or -t (each with its sign) keeps every relation, so when all
corners are suppressed each one can move by the cube's room (``Cubes.room``): a proof of width that
needs no programme, and the GHMITER way of choosing complements. The cubes of a cell are built at
once with numpy over the table's cells by coordinates (margins at the last index of each
dimension), in the order ``itertools.product`` gives the alternatives: the first dimension's choice
varies slowest, so the first cube that fits and the cheapest one (ties to the first) do not depend
on how they were computed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CUBE_CHOICES = 8  # alternatives tried per dimension when choosing a hypercube of complements
DENSE_CELLS = 1 << 20  # up to this many coordinates, cells are also found by a dense array (8 MB at most)


@dataclass(frozen=True)
class Cubes:
    """Every cube through one cell, one row each, in ``itertools.product`` order of the alternatives."""

    corners: np.ndarray  # (cubes, 2**d) cell indices, the cell itself first; -1 where the table has no such cell
    negative: np.ndarray  # (cubes, 2**d) whether the corner moves against the cell
    valid: np.ndarray  # (cubes,) every corner is a cell of the table (and of ``among``, when given)
    room: np.ndarray  # (cubes,) how far the corners move down and up together under the non-negative bound


@dataclass(frozen=True)
class Lines:
    """The lines of one dimension: groups of cells equal in every other coordinate, each ranked by value
    both ways (ties by coordinate: domain order, the margin last)."""

    line_of: np.ndarray  # (cells,) the line of each cell
    starts: np.ndarray  # (lines + 1,) where each line begins in the rankings
    cheapest: np.ndarray  # cells by line, then value, then coordinate
    roomiest: np.ndarray  # cells by line, then value descending, then coordinate

    @classmethod
    def of(cls, coordinates: np.ndarray, j: int, values: np.ndarray) -> Lines:
        others = np.delete(coordinates, j, axis=1)
        if others.shape[1]:
            line_of = np.unique(others, axis=0, return_inverse=True)[1].reshape(-1)
        else:
            line_of = np.zeros(len(coordinates), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(np.bincount(line_of))]).astype(np.int64)
        cheapest = np.lexsort((coordinates[:, j], values, line_of))
        roomiest = np.lexsort((coordinates[:, j], -values, line_of))
        return cls(line_of, starts, cheapest, roomiest)

    def ranked(self, cell: int, roomiest: bool) -> np.ndarray:
        """The cells of ``cell``'s line (itself included), ranked."""
        line = self.line_of[cell]
        return (self.roomiest if roomiest else self.cheapest)[self.starts[line] : self.starts[line + 1]]


@dataclass(frozen=True)
class Grid:
    """The table's cells by coordinates: ``find`` turns coordinates into cell indices (-1 where no cell is).

    Coordinate j of a cell is the position of its value in dimension j's domain, or n_j for the
    margin. When the product of the domains is small, a dense array holds every coordinate's cell (one
    lookup); otherwise lookups go one dimension at a time: the coordinates so far are ranked among the
    prefixes the table's cells have (``prefixes[j]``, sorted), so memory stays linear in the cells
    however large and sparse the product of the domains is, and no code outgrows an integer.
    """

    shape: tuple[int, ...]  # n_j + 1 per dimension
    coordinates: np.ndarray  # (cells, d)
    prefixes: tuple[np.ndarray, ...]  # per dimension, the sorted codes of the cells' coordinates up to it
    cell_of: np.ndarray  # cell index by the rank of its full code
    values: np.ndarray  # the table's (scaled) values
    depth: np.ndarray  # (cells,) in how many dimensions each cell is a margin
    picks: np.ndarray  # (2**d, d) which dimensions each corner takes the alternative in, in product order
    lines: tuple[Lines, ...]  # per dimension, the cells that differ only there
    dense: np.ndarray | None  # cell index (or -1) at every coordinate, when the domains' product is small

    @classmethod
    def of(cls, keys: Sequence[tuple[Hashable | None, ...]], domains: Sequence[Sequence[Hashable]], values: np.ndarray) -> Grid:
        width = len(domains)
        position = [{v: i for i, v in enumerate(domain)} for domain in domains]
        coordinates = np.array(
            [[len(domains[j]) if key[j] is None else position[j][key[j]] for j in range(width)] for key in keys], dtype=np.int64
        ).reshape(len(keys), width)
        shape = tuple(len(domain) + 1 for domain in domains)
        prefixes, rank = [], np.zeros(len(keys), dtype=np.int64)
        for j in range(width):
            code = rank * shape[j] + coordinates[:, j]  # rank < cells and shape[j] <= cells + 1: no overflow
            prefixes.append(np.unique(code))
            rank = np.searchsorted(prefixes[-1], code)
        cell_of = np.zeros(len(keys), dtype=np.int64)
        cell_of[rank] = np.arange(len(keys))
        depth = np.sum(coordinates == np.array(shape, dtype=np.int64) - 1, axis=1)
        picks = np.array(list(itertools.product((False, True), repeat=width)), dtype=bool).reshape(2**width, width)
        lines = tuple(Lines.of(coordinates, j, values) for j in range(width))
        dense = None
        if width and math.prod(shape) <= DENSE_CELLS:
            dense = np.full(shape, -1, dtype=np.int64)
            dense[tuple(coordinates.T)] = np.arange(len(keys))
        return cls(shape, coordinates, tuple(prefixes), cell_of, values, depth, picks, lines, dense)

    def find(self, index: Sequence[np.ndarray | np.int64]) -> np.ndarray:
        """The cells at the coordinates ``index`` (one array per dimension, broadcast together), -1 where none is."""
        if self.dense is not None:
            found: np.ndarray = self.dense[tuple(index)]
            return found
        rank: np.ndarray | np.int64 = np.int64(0)
        for j, prefixes in enumerate(self.prefixes):
            code = rank * self.shape[j] + index[j]  # a missing prefix (-1) gives a negative code: never found
            at = np.minimum(np.searchsorted(prefixes, code), len(prefixes) - 1)
            rank = np.where(prefixes[at] == code, at, -1)
        return np.where(rank >= 0, self.cell_of[rank], -1)

    def alternatives(self, cell: int, j: int, among: np.ndarray | None) -> np.ndarray:
        """Coordinates the cube may pair with the cell's in dimension j, at most ``CUBE_CHOICES``: the other
        categories and the margin that are cells (of ``among``, when given), to build a cube the cheapest
        neighbour first, to certify one among suppressed cells the roomiest (ties in domain order, the
        margin last)."""
        line = self.lines[j]
        members = line.ranked(cell, roomiest=among is not None)
        keep = members != cell
        if among is not None:
            keep &= among[members]
        chosen: np.ndarray = self.coordinates[members[keep][:CUBE_CHOICES], j]
        return chosen

    def cubes(self, cell: int, among: np.ndarray | None) -> Cubes:
        """Every cube through ``cell`` from the alternatives of each dimension (see ``alternatives``)."""
        own = self.coordinates[cell]
        width = len(own)
        options = [self.alternatives(cell, j, among) for j in range(width)]
        if not width or any(len(o) == 0 for o in options):
            empty = np.zeros((0, 2**width), dtype=np.int64)
            return Cubes(empty, empty.astype(bool), np.zeros(0, dtype=bool), np.zeros(0))
        margin = np.array(self.shape, dtype=np.int64) - 1
        index, flips = [], np.zeros((2**width,) + (1,) * width, dtype=np.int64)
        for j, option in enumerate(options):
            along = option.reshape([1] + [-1 if i == j else 1 for i in range(width)])
            pick = self.picks[:, j].reshape((-1,) + (1,) * width)
            index.append(np.where(pick, along, own[j]))
            flips = flips + (pick & (own[j] != margin[j]) & (along != margin[j]))
        corners = self.find(index).reshape(2**width, -1).T
        negative = (flips % 2 == 1).reshape(2**width, -1).T  # flips has every dimension's alternatives by now
        valid = np.all(corners >= 0, axis=1)
        if among is not None:
            valid &= np.all(among[corners] | (corners < 0), axis=1)
        value = np.where(corners >= 0, self.values[corners], math.inf)
        up = np.min(np.where(negative, math.inf, value), axis=1)
        down = np.min(np.where(negative, value, math.inf), axis=1)
        return Cubes(corners, negative, valid, up + down)

    def cheapest(self, cell: int, suppressed: np.ndarray, need: float) -> frozenset[int]:
        """The corners of the cheapest cube through ``cell`` with room ``need`` (nothing when none has):
        least value newly suppressed, then least margin depth, then the first in product order."""
        found = self.cubes(cell, None)
        fits = np.flatnonzero(found.valid & (found.room >= need))
        if not len(fits):
            return frozenset()
        corners = found.corners[fits]
        cost = np.zeros(len(fits))
        for k in range(corners.shape[1]):  # corner by corner, as a running sum adds them
            cost = cost + np.where(suppressed[corners[:, k]], 0.0, self.values[corners[:, k]])
        depth = np.sum(self.depth[corners], axis=1)
        best = np.lexsort((np.arange(len(fits)), depth, cost))[0]
        return frozenset(int(c) for c in corners[best])

    def certificate(self, cell: int, among: np.ndarray, need: float) -> frozenset[int] | None:
        """The corners of the first cube of ``among`` cells through ``cell`` with room ``need``, or None."""
        found = self.cubes(cell, among)
        fits = np.flatnonzero(found.valid & (found.room >= need))
        return frozenset(int(c) for c in found.corners[fits[0]]) if len(fits) else None
