"""The evidence contract between the engines and output control.

An engine (the query rewrite in ``jobs/query``, the statistics ops in ``jobs/stats``) returns its
result table with extra columns, named by the conventions below, that carry what the disclosure
rules need about each row's cells. Output control reads them by name and drops them before
release. Evidence is computed inside the engine query, never by pulling rows into Python.

For every aggregate output column ``c``:

===========================  ===============================================================
``__units_<i>``              distinct privacy units behind the row, per table reference i (the
                             row's unit count is the minimum over i)
``__top_<c>``                LIST<DOUBLE>: the largest per-unit totals of the aggregate's argument,
                             descending, at most ``top_n`` of them (magnitude aggregates)
``__total_<c>``              DOUBLE: the sum of all per-unit totals (magnitude aggregates)
``__neg_<c>``                BIGINT: privacy units whose total is negative
``__missing_<c>``            BIGINT: rows behind the cell whose argument is NULL
``__below_<c>``              BIGINT: distinct units whose value is <= the released value (order statistics)
``__above_<c>``              BIGINT: distinct units whose value is >= the released value (order statistics)
``__count_<c>``              BIGINT: rows whose argument is not NULL (means and spreads, under rounding)
``__sum_<c>``                DOUBLE: the sum of the argument (means and spreads, under rounding)
``__sumsq_<c>``              DOUBLE: the sum of the argument's squares (spreads, under rounding)
===========================  ===============================================================

Under a rounding policy a mean or a spread is not released as computed: output control derives it
from the rounded count and the rounded sums (``ROUNDING_COMPONENTS`` says which an aggregate needs).

Tables with margins (statistics ops) also carry ``__grouping``: a bitmask as DuckDB's
``GROUPING(d0, d1, ...)`` gives it, bit set when that dimension is aggregated away ("All").
Missing evidence columns mean "not applicable" for that aggregate, except ``__units_*``, whose
absence fails every threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policies.model import Aggregate

UNITS_PREFIX = "__units_"
GROUPING_COLUMN = "__grouping"
EVIDENCE_PREFIX = "__"

MAGNITUDE = frozenset({Aggregate.SUM, Aggregate.AVG})
ORDER_STATISTICS = frozenset({Aggregate.MIN, Aggregate.MAX, Aggregate.MEDIAN, Aggregate.QUANTILE})
# Under rounding, released as a function of these rounded components only (never as computed).
ROUNDING_COMPONENTS: dict[Aggregate, tuple[str, ...]] = {
    Aggregate.AVG: ("count", "sum"),
    Aggregate.STDDEV: ("count", "sum", "sumsq"),
    Aggregate.VARIANCE: ("count", "sum", "sumsq"),
}
# Under rounding, not released at all: where a quantile falls among the sorted values gives exact
# counts (QUANTILE_DISC(x, q) of a 0/1 column changes value at q = zeros / count), whatever its value.
NOT_ROUNDABLE = frozenset({Aggregate.MEDIAN, Aggregate.QUANTILE})


def top_column(output: str) -> str:
    return f"__top_{output}"


def total_column(output: str) -> str:
    return f"__total_{output}"


def negative_column(output: str) -> str:
    return f"__neg_{output}"


def missing_column(output: str) -> str:
    return f"__missing_{output}"


def below_column(output: str) -> str:
    return f"__below_{output}"


def above_column(output: str) -> str:
    return f"__above_{output}"


def component_column(component: str, output: str) -> str:
    """``__count_<c>``, ``__sum_<c>`` or ``__sumsq_<c>``: a rounding component of output ``c``."""
    return f"__{component}_{output}"


def is_evidence(column: str) -> bool:
    return column.startswith(EVIDENCE_PREFIX)


@dataclass(frozen=True)
class Output:
    """An aggregate output column, the aggregate that produced it, and what it aggregates.

    ``argument`` names the aggregated expression (``None``: COUNT(*), or not known): a sum and a
    mean of one argument in one row give that population's count (sum / mean), and output control
    protects that count like a released one (``policies.linked``).
    """

    name: str
    aggregate: Aggregate
    argument: str | None = None


@dataclass(frozen=True)
class CellEvidence:
    """What the engine computed about one result cell."""

    aggregate: Aggregate
    value: Any
    units: int
    top: tuple[float, ...] = ()
    total: float | None = None
    negative: int = 0
    missing: int = 0
    below: int | None = None
    above: int | None = None


def evidence_rows(table_columns: dict[str, list[Any]], outputs: Sequence[Output], units: Sequence[int]) -> list[dict[str, CellEvidence]]:
    """Per row, the evidence of each aggregate cell, from the evidence columns present."""
    rows: list[dict[str, CellEvidence]] = []
    for i, row_units in enumerate(units):
        cells = {}
        for out in outputs:

            def get(column: str, default: Any = None, i: int = i) -> Any:
                values = table_columns.get(column)
                return default if values is None or values[i] is None else values[i]

            cells[out.name] = CellEvidence(
                aggregate=out.aggregate,
                value=get(out.name),
                units=row_units,
                top=tuple(float(v) for v in get(top_column(out.name), ()) if v is not None),
                total=get(total_column(out.name)),
                negative=int(get(negative_column(out.name), 0)),
                missing=int(get(missing_column(out.name), 0)),
                below=get(below_column(out.name)),
                above=get(above_column(out.name)),
            )
        rows.append(cells)
    return rows
