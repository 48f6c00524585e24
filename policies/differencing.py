"""Differencing across releases: a new cell whose population differs from an earlier released cell
of the same dataset version, released to any organisation, by 1..k-1 privacy units is held for review.

Two aggregates over populations that differ by one person disclose that person (e.g. the total
income of everyone, then of everyone but race 5). Each released cell is recorded with its size;
populations are recomputed exactly, from the jobs' plans over the immutable dataset version, only
when a new cell comes within k-1 units of an earlier one in size, and compared as roaring bitmaps
of the units' 64-bit hashes (``jobs.query.population`` computes them; the database lookups are the
runtime's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyroaring import BitMap64

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    key: Key
    units: int


@dataclass(frozen=True)
class Earlier:
    job_id: str
    key: Key
    units: int


@dataclass(frozen=True)
class Finding:
    key: Key
    job_id: str
    difference: int


def candidates(cells: Iterable[Cell], earlier: Iterable[Earlier], k: int) -> list[tuple[Cell, Earlier]]:
    """Pairs close enough in size that their populations could differ by 1..k-1 units."""
    earlier = list(earlier)
    return [(cell, old) for cell in cells for old in earlier if abs(cell.units - old.units) <= k - 1]


def find(
    pairs: Sequence[tuple[Cell, Earlier]],
    new_population: dict[Key, BitMap64],
    old_population: Callable[[str], dict[Key, BitMap64]],
    k: int,
) -> list[Finding]:
    """Exact comparison of the candidate pairs; ``old_population(job_id)`` recomputes an earlier job's cells."""
    findings: dict[Key, Finding] = {}
    cache: dict[str, dict[Key, BitMap64]] = {}
    for cell, old in pairs:
        if cell.key in findings:
            continue
        if old.job_id not in cache:
            cache[old.job_id] = old_population(old.job_id)
        mine, theirs = new_population.get(cell.key), cache[old.job_id].get(old.key)
        if mine is None or theirs is None:
            continue
        difference = len(mine ^ theirs)
        if 1 <= difference <= k - 1:
            findings[cell.key] = Finding(cell.key, old.job_id, difference)
    return list(findings.values())
