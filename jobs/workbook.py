"""Reading an Excel workbook (``.xlsx``) into an Arrow table of one sheet, within the upload limits.

openpyxl reads the workbook in read-only mode, which streams the sheet's XML row by row: rows and
cells are counted as they arrive, and reading stops at the first limit passed. The archive's own
directory is checked first: a workbook whose parts would inflate past ``XML_BYTES_PER_DECODED_BYTE``
times the decoded-bytes limit is refused before anything is decompressed (a zip bomb).

The first row is the header. Merged cells are refused: a merged header names two columns at once, and
a merged value stands in the data for rows or columns that hold nothing. Like every upload error,
the messages carry counts and cell references, never a value from the file.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import openpyxl
import pyarrow as pa
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.xml.functions import iterparse  # the parser openpyxl reads the same XML with

from core.errors import UploadTooLarge, ValidationFailed
from jobs.bounded import IngestLimits

XLSX_MAGIC = b"PK\x03\x04"
# Spreadsheet XML spends tens of bytes of markup on a cell; parts inflating past this many bytes per
# byte the table may decode to are refused unread.
XML_BYTES_PER_DECODED_BYTE = 16


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"field": "file"})


def read_xlsx(data: bytes, limits: IngestLimits, sheet: str | None = None) -> pa.Table:
    """The first sheet of the workbook (or ``sheet``) as a table of its header row and values."""
    _check_archive(data, limits)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise _refused("the file is named as an Excel workbook (.xlsx) but could not be read as one") from None
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise _refused(f"the workbook has no sheet named {sheet!r} (it has {len(workbook.sheetnames)} sheets)")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        _check_merged(data, worksheet)
        rows = _rows(worksheet.iter_rows(values_only=True), limits)
    finally:
        workbook.close()
    return _table(rows, limits)


def _check_archive(data: bytes, limits: IngestLimits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        raise _refused("the file is named as an Excel workbook (.xlsx) but is not one") from None
    most = limits.max_decoded_bytes * XML_BYTES_PER_DECODED_BYTE
    if inflated > most:
        raise UploadTooLarge(
            f"the workbook decompresses to more than {most} bytes ({XML_BYTES_PER_DECODED_BYTE} × SANDBOX_MAX_UPLOAD_DECODED_BYTES)",
            details={"limit": "max_upload_decoded_bytes", "maximum": limits.max_decoded_bytes},
        )


def _check_merged(data: bytes, worksheet: Any) -> None:
    """Refuse a sheet with merged cells, naming the first range (a cell reference, not a value).

    Read-only worksheets do not parse ``<mergeCells>``, so the sheet's XML part is streamed once more
    here, keeping no element: openpyxl's ``_worksheet_path`` says which part it is.
    """
    merged: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(worksheet._worksheet_path) as source:
        for _, element in iterparse(source):
            if element.tag.rsplit("}", 1)[-1] == "mergeCell":
                merged.append(str(element.get("ref", "?")))
            element.clear()
    if not merged:
        return
    header = [ref for ref in merged if _first_row(ref) == 1]
    if header:
        raise _refused(f"the header row has merged cells ({header[0]}): unmerge them and give each column its own name in the first row")
    raise _refused(f"the sheet has {len(merged)} merged cell ranges (the first {merged[0]}): unmerge them so each cell holds its own value")


def _first_row(ref: str) -> int:
    digits = "".join(char for char in ref.split(":", maxsplit=1)[0] if char.isdigit())
    return int(digits) if digits else 0


def _rows(rows: Iterator[tuple[Any, ...]], limits: IngestLimits) -> list[tuple[Any, ...]]:
    """The sheet's rows, counted while they stream; trailing empty rows dropped."""
    kept: list[tuple[Any, ...]] = []
    width = 0
    for row in rows:
        width = max(width, len(row))
        limits.check(max(len(kept) - 1, 0), width, 0)
        kept.append(row)
    while kept and all(value is None for value in kept[-1]):
        kept.pop()
    return kept


def _table(rows: list[tuple[Any, ...]], limits: IngestLimits) -> pa.Table:
    if not rows:
        raise _refused("the sheet is empty: the first row must name the columns")
    header = list(rows[0])
    while header and header[-1] is None:
        header.pop()
    if not header:
        raise _refused("the sheet's first row is empty: it must name the columns")
    missing = [index + 1 for index, name in enumerate(header) if name is None or str(name).strip() == ""]
    if missing:
        raise _refused(f"the header row has no name in column {missing[0]}: every column needs a name in the first row")
    names = [str(name) for name in header]
    body = rows[1:]
    if any(any(value is not None for value in row[len(names) :]) for row in body):
        raise _refused("some rows have values beyond the named columns: every column needs a name in the first row")
    columns = [_column([row[index] if index < len(row) else None for row in body]) for index in range(len(names))]
    table = pa.table(columns, names=names)  # a name given twice is refused by ingest, as in a CSV file
    limits.check(table.num_rows, table.num_columns, table.nbytes)
    return table


def _column(values: list[Any]) -> pa.Array:
    """One column as Arrow infers it; dates without a time as dates; a mix of kinds as text (ingest casts and checks)."""
    if values and all(isinstance(v, dt.datetime) and v.time() == dt.time() for v in values if v is not None):
        values = [v.date() if isinstance(v, dt.datetime) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
