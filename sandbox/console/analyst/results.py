"""A released result (or a dry run's answer) as the analyst sees it: a table whose every withheld, rounded or
noised cell is marked and explained, the data of its chart, and its CSV and XLSX downloads.

The result comes from ``sandbox.api.jobs.result_out``, the function that answers
``GET /api/v1/jobs/{id}/result``: its cells carry the notes of the analyst's view (``analyst_view``),
one ``withheld`` status for every withheld cell, a table-wide ``rounding`` note, a ``dp`` note with the
noise scale of each noised cell. A withheld cell is shown, charted and downloaded without a value,
whatever its row holds; a dry run's notes keep their rule's own status (``suppress``, ``block``,
``review``), as the API shows them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import openpyxl
from flask import Blueprint, Response, render_template
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from core.errors import Conflict
from core.values import Role
from jobs.released import LABELS
from sandbox.api.jobs import result_out
from sandbox.api.schemas import DryRunOut, ResultColumn, ResultOut
from sandbox.console.i18n import language
from sandbox.console.signin import signed_in
from sandbox.service.auth import Principal

TABLE_ROW = -1  # a note's row when it speaks of the whole table (``policies.output_control``)
WITHHELD = frozenset({"withheld", "suppress", "block"})  # the analyst's view says withheld; a dry run the rule's own status
SHOWN_ROWS = 500  # rows of the table in the page; the downloads have all
CHART_ROWS = 60  # categories a chart shows
CHART_SERIES = 8
NUMERIC_TYPES = ("int", "uint", "float", "double", "decimal", "halffloat")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a text cell starting so is a formula to a spreadsheet
ECHARTS_LOCALES = {"zh_CN": "ZH", "en": "EN"}


class Mark(StrEnum):
    WITHHELD = "withheld"
    FLAGGED = "flagged"
    ROUNDED = "rounded"
    NOISED = "noised"


MARK_NAMES = {
    Mark.WITHHELD: _l("withheld"),
    Mark.FLAGGED: _l("flagged for review"),
    Mark.ROUNDED: _l("rounded"),
    Mark.NOISED: _l("noised"),
}
MARK_TEXTS = {
    Mark.WITHHELD: _l("Withheld by output control: no value is released for this cell, and the reason is not shown."),
    Mark.FLAGGED: _l("Flagged by a disclosure rule: on real data an auditor would decide on this cell."),
    Mark.ROUNDED: _l(
        "Rounded: counts, totals, minima and maxima to the policy's base; means and spreads are computed from the rounded"
        " counts and sums, so margins may not add up."
    ),
    Mark.NOISED: _l("Noised: differential-privacy noise was added to this cell; its error bound is given beside it."),
}
MARK_SIGNS = {Mark.WITHHELD: "×", Mark.FLAGGED: "!", Mark.ROUNDED: "≈", Mark.NOISED: "±"}


@dataclass(frozen=True)
class Cell:
    value: Any  # None when withheld, whatever the row holds
    marks: tuple[Mark, ...] = ()
    detail: str | None = None  # the API's own note on this cell (English), e.g. a DP noise scale
    bound: float | None = None  # a noised cell's error bound (95%), from the result's DP summary

    @property
    def withheld(self) -> bool:
        return Mark.WITHHELD in self.marks


@dataclass(frozen=True)
class ResultTable:
    columns: list[ResultColumn]
    rows: list[list[Cell]]
    marks: list[Mark]  # the marks the table uses, each explained once under it
    table_notes: list[str] = field(default_factory=list)  # the API's notes on the whole table (English)
    synthetic: bool = False

    @property
    def withheld(self) -> int:
        return sum(1 for row in self.rows for cell in row if cell.withheld)

    @property
    def shown(self) -> list[list[Cell]]:
        return self.rows[:SHOWN_ROWS]


def is_number(column: ResultColumn) -> bool:
    return column.kind not in LABELS and column.type.startswith(NUMERIC_TYPES)


def result_table(result: ResultOut | DryRunOut) -> ResultTable:
    """The released table with each cell's marks: every note of the result lands on its cell."""
    by_cell: dict[tuple[int, str], dict[str, Any]] = {}
    note: dict[str, Any] | None
    table_notes, rounded = [], False
    for note in result.notes:
        if note.get("row") == TABLE_ROW:
            table_notes.append(str(note.get("reason", "")))
            rounded = rounded or note.get("rule") == "rounding"
        else:
            by_cell[(int(note["row"]), str(note["column"]))] = note
    bounds = _error_bounds(result.summary)
    rows = []
    for index, row in enumerate(result.rows):
        cells = []
        for column in result.columns:
            note = by_cell.get((index, column.name))
            cell = _cell(row.get(column.name), note, rounded and is_number(column))
            if Mark.NOISED in cell.marks:
                cell = replace(cell, bound=_bound(bounds, column.name, index))
            cells.append(cell)
        rows.append(cells)
    used = {mark for row in rows for cell in row for mark in cell.marks}
    return ResultTable(list(result.columns), rows, [m for m in Mark if m in used], table_notes, isinstance(result, DryRunOut))


def _error_bounds(summary: dict[str, Any]) -> dict[str, Any]:
    """A DP result's per-cell errors (``summary.dp.errors``: column -> one ``{scale, bound95}`` per row)."""
    dp = summary.get("dp")
    errors = dp.get("errors") if isinstance(dp, dict) else None
    return errors if isinstance(errors, dict) else {}


def _bound(bounds: dict[str, Any], column: str, row: int) -> float | None:
    """The cell's 95% error bound, in the value's units (a quantile's bound is in ranks: none shown)."""
    found = bounds.get(column)
    if not isinstance(found, list) or row >= len(found) or not isinstance(found[row], dict):
        return None
    value = found[row].get("bound95")
    return float(value) if isinstance(value, int | float) else None


def _cell(value: Any, note: dict[str, Any] | None, rounded: bool) -> Cell:
    marks: list[Mark] = []
    detail = None
    if note is not None:
        status, detail = str(note.get("status")), str(note.get("reason", ""))
        if status in WITHHELD:
            return Cell(None, (Mark.WITHHELD,), None)
        if status == "review":
            marks.append(Mark.FLAGGED)
        elif note.get("rule") == "dp":
            marks.append(Mark.NOISED)
    if rounded and value is not None:
        marks.append(Mark.ROUNDED)
    return Cell(value, tuple(marks), detail)


def chart_of(table: ResultTable) -> dict[str, Any] | None:
    """The data of the result's bar chart: one bar series per number column, one category per row.

    A withheld cell is ``null`` in its series (a gap) and a point of the ``withheld`` marker series at
    the axis, never a value. None when the table has no number column or no row.
    """
    numbers = [i for i, column in enumerate(table.columns) if is_number(column)][:CHART_SERIES]
    labels = [i for i, column in enumerate(table.columns) if column.kind in LABELS and column.kind != "margin"]
    rows = table.rows[:CHART_ROWS]
    if not numbers or not rows:
        return None
    every = str(_("all"))
    categories = [" · ".join(every if row[i].value is None else str(row[i].value) for i in labels) for row in rows]
    categories = [category or str(n + 1) for n, category in enumerate(categories)]
    series = [{"name": table.columns[i].name, "data": [None if row[i].withheld else row[i].value for row in rows]} for i in numbers]
    withheld = [[n, table.columns[i].name] for n, row in enumerate(rows) for i in numbers if row[i].withheld]
    return {
        "locale": ECHARTS_LOCALES.get(language(), "EN"),
        "categories": categories,
        "series": series,
        "withheld": withheld,
        "texts": {"withheld": str(MARK_NAMES[Mark.WITHHELD]), "withheld_explained": str(MARK_TEXTS[Mark.WITHHELD])},
        "truncated": len(table.rows) > len(rows),
    }


# --- downloads -------------------------------------------------------------------------------------


def _safe_text(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: never a formula, no character XML cannot hold."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + value if value.startswith(FORMULA_START) else value


def _marks_text(table: ResultTable, row: list[Cell]) -> str:
    marked = [(column.name, cell) for column, cell in zip(table.columns, row, strict=True) if cell.marks]
    return "; ".join(f"{name}: {', '.join(str(MARK_NAMES[mark]) for mark in cell.marks)}{_bound_text(cell)}" for name, cell in marked)


def _bound_text(cell: Cell) -> str:
    return "" if cell.bound is None else f" ±{cell.bound:g}"


def csv_bytes(table: ResultTable) -> bytes:
    """UTF-8 with a BOM (Excel reads it as UTF-8); a withheld cell is empty; the last column lists each row's marks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_safe_text(column.name) for column in table.columns] + [str(_("marks"))])
    for row in table.rows:
        writer.writerow([_safe_text(cell.value) if cell.value is not None else "" for cell in row] + [_marks_text(table, row)])
    writer.writerow([])
    for mark in table.marks:
        writer.writerow([f"{MARK_NAMES[mark]}: {MARK_TEXTS[mark]}"])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def xlsx_bytes(table: ResultTable) -> bytes:
    """A workbook of two sheets: the result (a withheld cell empty) and its marks, one line per marked cell."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = str(_("Result"))
    _append(sheet, [column.name for column in table.columns])
    for row in table.rows:
        _append(sheet, [None if cell.withheld else cell.value for cell in row])
    marks = book.create_sheet(str(_("Marks")))
    _append(marks, [str(_("Row")), str(_("Column")), str(_("Mark")), str(_("Explanation")), str(_("Note of the result"))])
    for number, row in enumerate(table.rows, start=1):
        for column, cell in zip(table.columns, row, strict=True):
            for mark in cell.marks:
                _append(marks, [number, column.name, str(MARK_NAMES[mark]), str(MARK_TEXTS[mark]), cell.detail or ""])
    for note in table.table_notes:
        _append(marks, [None, "*", "", "", note])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _append(sheet: Any, values: list[Any]) -> None:
    sheet.append([_safe_text(value) for value in values])
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"  # openpyxl would read a text starting with "=" as a formula


DOWNLOADS: dict[str, tuple[Callable[[ResultTable], bytes], str]] = {
    "csv": (csv_bytes, "text/csv"),
    "xlsx": (xlsx_bytes, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def _download(data: bytes, mimetype: str, name: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _released(person: Principal, job_id: str) -> ResultTable | None:
    try:
        return result_table(result_out(person, job_id))
    except Conflict:
        return None


def _not_released() -> tuple[str, int]:
    return render_template("error.html", status=409, message=_("Only a released result can be downloaded.")), 409


def cell_text(value: Any) -> str:
    """A released value as the page shows it: numbers per locale, nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(format_decimal(value))


def register(bp: Blueprint) -> None:
    bp.add_app_template_filter(cell_text, "cell")

    @bp.context_processor
    def _marks() -> dict[str, Any]:
        return {"marks_name": MARK_NAMES, "marks_text": MARK_TEXTS, "marks_sign": MARK_SIGNS}

    @bp.route("/jobs/<job_id>/result.<any(csv, xlsx):suffix>")
    @signed_in(Role.ANALYST)
    def result_download(person: Principal, job_id: str, suffix: str) -> Any:
        table = _released(person, job_id)
        if table is None:
            return _not_released()
        write, mimetype = DOWNLOADS[suffix]
        return _download(write(table), mimetype, f"job-{job_id[:8]}.{suffix}")
