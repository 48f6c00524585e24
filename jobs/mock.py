"""Mock data: synthetic rows with a dataset's schema, for analysts to develop against.

Rows are drawn from the declared metadata alone (domains, bounds, types), each column
independently; the generator never reads the stored data. So a mock row carries no information
about any real record, and a match with one can only be chance.

A column its provider encrypted (``paillier``) has no declared bounds to draw from and nobody in the
domain may see its values: mock rows show ``<encrypted>`` in it, and dry runs get nulls (an ``he``
aggregate's dry run computes its groups and counts, never its sums).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.schema import ColumnSpec, DatasetSchema
from core.values import ColumnRole, ColumnType

UNBOUNDED_INT = (0, 100)  # used only when a column declares no bounds
UNBOUNDED_FLOAT = (0.0, 1.0)
STRING_LEVELS = 5
DATE_DAYS = 9_000  # mock dates fall in the 9,000 days from 2000-01-01
ENCRYPTED = "<encrypted>"  # what a mock row shows in a paillier column


ARROW = {
    ColumnType.INT: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.STRING: pa.string(),
    ColumnType.BOOL: pa.bool_(),
    ColumnType.DATE: pa.string(),
}


def mock_table(schema: DatasetSchema, rows: int, seed: int | None) -> pa.Table:
    """Mock rows as an Arrow table with the declared column types, for dry runs."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, spec in schema.columns.items():
        if spec.type is ColumnType.PAILLIER:
            arrays[name] = pa.nulls(rows, pa.binary())
            continue
        values = _column(name, spec, rows, rng)
        arrow_type = pa.string() if spec.domain is not None and spec.type is ColumnType.STRING else ARROW[spec.type]
        arrays[name] = pa.array(values, type=arrow_type) if spec.type is not ColumnType.DATE else pc.cast(pa.array(values), pa.date32())
    return pa.table(arrays)


def mock_levels(spec: ColumnSpec, rows: int) -> int:
    """How many distinct values ``rows`` mock rows can hold in a column of ``spec``: the generator's own ranges, at most ``rows``."""
    if spec.role is ColumnRole.IDENTIFIER or spec.type in (ColumnType.FLOAT, ColumnType.PAILLIER):
        return rows
    if spec.domain is not None:
        levels = len(spec.domain)
    elif spec.type is ColumnType.INT:
        low, high = (int(spec.bounds.lower), int(spec.bounds.upper)) if spec.bounds else UNBOUNDED_INT
        levels = high - low + 1
    else:
        levels = {ColumnType.BOOL: 2, ColumnType.DATE: DATE_DAYS}.get(spec.type, STRING_LEVELS)
    return min(levels, rows)


def mock_rows(schema: DatasetSchema, rows: int, seed: int | None) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    columns = {
        name: [ENCRYPTED] * rows if spec.type is ColumnType.PAILLIER else _column(name, spec, rows, rng)
        for name, spec in schema.columns.items()
    }
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)]


def _column(name: str, spec: ColumnSpec, rows: int, rng: np.random.Generator) -> list[Any]:
    if spec.role is ColumnRole.IDENTIFIER:
        return _identifiers(spec, rows, rng)
    if spec.domain is not None:
        picks = rng.integers(0, len(spec.domain), size=rows)
        return [spec.domain[i] for i in picks]
    if spec.type.numeric:
        return _numbers(spec, rows, rng)
    if spec.type is ColumnType.BOOL:
        return [bool(v) for v in rng.integers(0, 2, size=rows)]
    if spec.type is ColumnType.DATE:
        start = dt.date(2000, 1, 1)
        return [(start + dt.timedelta(days=int(d))).isoformat() for d in rng.integers(0, DATE_DAYS, size=rows)]
    return [f"{name}_{int(v) + 1}" for v in rng.integers(0, STRING_LEVELS, size=rows)]


def _numbers(spec: ColumnSpec, rows: int, rng: np.random.Generator) -> list[Any]:
    if spec.type is ColumnType.INT:
        low, high = (int(spec.bounds.lower), int(spec.bounds.upper)) if spec.bounds else UNBOUNDED_INT
        return [int(v) for v in rng.integers(low, high + 1, size=rows)]
    low_f, high_f = (spec.bounds.lower, spec.bounds.upper) if spec.bounds else UNBOUNDED_FLOAT
    return [round(float(v), 2) for v in rng.uniform(low_f, high_f, size=rows)]


def _identifiers(spec: ColumnSpec, rows: int, rng: np.random.Generator) -> list[Any]:
    """Identifiers that cannot be mistaken for real ones: negative numbers or a MOCK- prefix."""
    numbers = rng.choice(10**9, size=rows, replace=False) + 1
    if spec.type is ColumnType.INT:
        return [-int(n) for n in numbers]
    return [f"MOCK-{int(n):09d}" for n in numbers]
