"""Differencing across releases: a new cell whose population differs from an earlier released cell
of the same dataset version, released to any organisation, by 1..k-1 privacy units is held for review.

Two aggregates over populations that differ by one person disclose that person (e.g. the total
income of everyone, then of everyone but race 5). Each released cell is recorded with its size;
populations are recomputed exactly, from the jobs' plans over the immutable dataset version, only
when a new cell comes within k-1 units of an earlier one in size, and compared as roaring bitmaps
of the units' 64-bit hashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlglot
from pyroaring import BitMap64
from sqlglot import exp

from jobs.query import QueryPlan

UNITS_ALIAS = "__units_0"
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


def population_sql(plan: QueryPlan) -> str:
    """The plan with its first unit count replaced by the list of the units' hashes (DuckDB's ``hash``)."""
    tree = sqlglot.parse_one(plan.executable_sql, dialect="duckdb")
    for alias in tree.find_all(exp.Alias):
        if alias.alias == UNITS_ALIAS and isinstance(alias.this, exp.Count) and isinstance(alias.this.this, exp.Distinct):
            unit = alias.this.this.expressions[0].copy()
            alias.set("this", exp.ArrayAgg(this=exp.Distinct(expressions=[exp.func("hash", unit)])))
            return tree.sql(dialect="duckdb")
    raise ValueError("the plan has no distinct unit count to turn into a population")


def populations(table: pa.Table, group_keys: Sequence[str]) -> dict[Key, BitMap64]:
    keys = [table.column(k).to_pylist() for k in group_keys]
    lists = table.column(UNITS_ALIAS).to_pylist()
    return {tuple(col[i] for col in keys): BitMap64(lists[i] or []) for i in range(table.num_rows)}


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
