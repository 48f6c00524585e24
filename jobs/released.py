"""The released form: what an analyst receives of a job, as JSON (``{columns, rows, notes, summary}``).

Every job kind lays its answer out through ``form``; cell values go through ``json_value`` so that the
form always serialises (strict JSON: no NaN, no decimals, no dates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from policies.output_control import Note

Released = dict[str, Any]  # {"columns": [...], "rows": [...], "notes": [...], "summary": {...}}


def json_value(value: Any) -> Any:
    """JSON-safe cell values: NaN and infinities become null, decimals numbers, dates ISO strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):  # DuckDB sums integers as DECIMAL(38, 0)
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]


LABELS = frozenset({"group_key", "margin", "entity"})  # column kinds that label a row rather than release a number


def cell_count(released: Released) -> int:
    """The cells a released form gives out: every value of its number columns, withheld (null) ones included.

    Counting withheld cells too keeps the count independent of which cells output control suppressed.
    """
    numbers = sum(1 for column in released["columns"] if column["kind"] not in LABELS)
    return numbers * len(released["rows"]) + script_cells(released)


def script_cells(released: Released) -> int:
    """The cells of a script's table outputs (every cell: a script's table has no labels the sandbox can tell apart)."""
    tables = [output for output in released.get("outputs", {}).values() if output["type"] == "table"]
    return sum(len(output["columns"]) * len(output["rows"]) for output in tables)


def form(columns: list[dict[str, str]], table: pa.Table, notes: Sequence[Note], summary: dict[str, Any]) -> Released:
    """The released form of ``table`` with its output-control ``notes`` and ``summary``."""
    return {"columns": columns, "rows": rows_of(table), "notes": [n.as_dict() for n in notes], "summary": summary}
