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

import pyarrow as pa

from core.errors import UploadTooLarge, ValidationFailed
from jobs.bounded import IngestLimits

XLSX_MAGIC = b"PK\x03\x04"
# Spreadsheet XML spends tens of bytes of markup on a cell; parts inflating past this many bytes per
# byte the table may decode to are refused unread.
XML_BYTES_PER_DECODED_BYTE = 16
BATCH_CELLS = 1 << 20  # values held as Python objects at once, before conversion to Arrow


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"field": "file"})


def read_xlsx(data: bytes, limits: IngestLimits, sheet: str | None = None) -> pa.Table:
    """The first sheet of the workbook (or ``sheet``) as a table of its header row and values."""
    _check_archive(data, limits)
    import openpyxl  # noqa: PLC0415 - workbooks only: a worker or web process starts without openpyxl
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415 - workbooks only: a worker or web process starts without openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise _refused("the file is named as an Excel workbook (.xlsx) but could not be read as one") from None
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise _refused(f"the workbook has no sheet named {sheet!r} (it has {len(workbook.sheetnames)} sheets)")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        _check_merged(data, worksheet)
        return _table(worksheet.iter_rows(values_only=True), limits)
    except (SyntaxError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, OSError):
        # A malformed sheet fails while it streams (XML ParseError is a SyntaxError); the reason would quote it.
        raise _refused("the workbook's sheet could not be read: its XML or a cell value is malformed") from None
    finally:
        workbook.close()


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
    from openpyxl.xml.functions import iterparse  # noqa: PLC0415 - workbooks only: a worker or web process starts without openpyxl

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


def _table(rows: Iterator[tuple[Any, ...]], limits: IngestLimits) -> pa.Table:
    """The header row's names and the body, converted to Arrow a batch at a time as the rows stream.

    Only one batch of Python values (``BATCH_CELLS`` cells) is held at once; the converted columns are
    counted against the decoded-bytes limit after each batch. Empty rows at the end are dropped.
    """
    names = _header(next(rows, None))
    limits.check(0, len(names), 0)
    chunks: list[list[pa.Array]] = [[] for _ in names]
    batch: list[tuple[Any, ...]] = []
    count = empty = size = 0
    for row in rows:
        if all(value is None for value in row):
            empty += 1  # kept only if a row with values follows
            continue
        if any(value is not None for value in row[len(names) :]):
            raise _refused("some rows have values beyond the named columns: every column needs a name in the first row")
        batch.extend([()] * empty)
        count, empty = count + empty + 1, 0
        batch.append(row)
        limits.check(count, len(names), size)
        if len(batch) * len(names) >= BATCH_CELLS:
            size += _flush(batch, chunks)
            limits.check(count, len(names), size)
    _flush(batch, chunks)
    table = pa.table([_joined(parts) for parts in chunks], names=names)  # a name given twice is refused by ingest, as in CSV
    limits.check(table.num_rows, table.num_columns, table.nbytes)
    return table


def _header(row: tuple[Any, ...] | None) -> list[str]:
    header = list(row or ())
    while header and header[-1] is None:
        header.pop()
    if not header:
        raise _refused("the sheet's first row is empty: it must name the columns")
    missing = [index + 1 for index, name in enumerate(header) if name is None or str(name).strip() == ""]
    if missing:
        raise _refused(f"the header row has no name in column {missing[0]}: every column needs a name in the first row")
    return [str(name) for name in header]


def _flush(batch: list[tuple[Any, ...]], chunks: list[list[pa.Array]]) -> int:
    """Convert ``batch`` into one chunk per column, empty it, and return the chunks' bytes."""
    if not batch:
        return 0
    arrays = [_column([row[index] if index < len(row) else None for row in batch]) for index in range(len(chunks))]
    for parts, array in zip(chunks, arrays, strict=True):
        parts.append(array)
    batch.clear()
    return sum(array.nbytes for array in arrays)


def _column(values: list[Any]) -> pa.Array:
    """One column as Arrow infers it; dates without a time as dates; a mix of kinds as text (ingest casts and checks)."""
    if values and all(isinstance(v, dt.datetime) and v.time() == dt.time() for v in values if v is not None):
        values = [v.date() if isinstance(v, dt.datetime) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _text_array(values)


def _joined(parts: list[pa.Array]) -> pa.Array:
    """A column's chunks as one array: their common type, numbers as float64 if ints and floats mix, else text."""
    types = {part.type for part in parts if not pa.types.is_null(part.type)}
    if not parts:
        return pa.array([], pa.null())
    if len(types) <= 1:
        target = types.pop() if types else pa.null()
        return pa.concat_arrays([part.cast(target) for part in parts])
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return pa.concat_arrays([part.cast(pa.float64()) for part in parts])
    return pa.concat_arrays([part if pa.types.is_string(part.type) else _text_array(part.to_pylist()) for part in parts])


def _text_array(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
