"""Excel workbooks read a batch at a time (``jobs.workbook``): types across batches, empty rows, malformed sheets."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from typing import Any

import openpyxl
import pyarrow as pa
import pytest

from core.errors import UploadTooLarge, ValidationFailed
from jobs import workbook
from jobs.bounded import IngestLimits

LIMITS = IngestLimits(max_rows=10_000, max_columns=10, max_cells=100_000, max_decoded_bytes=10**8)


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_columns_are_typed_and_dates_without_time_are_dates() -> None:
    table = workbook.read_xlsx(xlsx([["id", "金额", "日期"], [1, 2.5, dt.datetime(2024, 1, 2)], [2, 3, dt.datetime(2024, 2, 3)]]), LIMITS)
    assert table.column_names == ["id", "金额", "日期"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("金额").type == pa.float64()
    assert table.column("日期").to_pylist() == [dt.date(2024, 1, 2), dt.date(2024, 2, 3)]


def test_kinds_that_differ_between_batches_are_unified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workbook, "BATCH_CELLS", 4)  # two rows of two columns per batch
    rows = [["n", "code"], [1, 1], [2, 2], [2.5, "A7"], [3, 3], [None, None], [4, True]]
    table = workbook.read_xlsx(xlsx(rows), LIMITS)
    assert table.column("n").to_pylist() == [1.0, 2.0, 2.5, 3.0, None, 4.0]
    assert table.column("code").to_pylist() == ["1", "2", "A7", "3", None, "true"]


def test_empty_rows_inside_are_kept_and_trailing_ones_dropped() -> None:
    table = workbook.read_xlsx(xlsx([["a"], [1], [None], [2], [None], [None]]), LIMITS)
    assert table.column("a").to_pylist() == [1, None, 2]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["a", None, "c"], [1, 2, 3]], "no name in column 2"),
        ([["a"], [1, 2]], "beyond the named columns"),
        ([[None], [1]], "first row is empty"),
    ],
    ids=["header-gap", "value-beyond-header", "no-header"],
)
def test_a_sheet_without_a_name_for_every_column_is_refused(rows: list[list[Any]], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        workbook.read_xlsx(xlsx(rows), LIMITS)


def test_a_malformed_sheet_is_a_400_not_a_crash() -> None:
    source = zipfile.ZipFile(io.BytesIO(xlsx([["a"], [1]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as broken:
        for entry in source.infolist():
            data = source.read(entry)
            broken.writestr(entry, data.replace(b"</sheetData>", b"<row><c") if entry.filename.endswith("sheet1.xml") else data)
    with pytest.raises(ValidationFailed, match="could not be read"):
        workbook.read_xlsx(out.getvalue(), LIMITS)


def test_rows_are_counted_while_they_stream() -> None:
    with pytest.raises(UploadTooLarge) as refused:
        workbook.read_xlsx(
            xlsx([["a"], *([i] for i in range(50))]), IngestLimits(max_rows=20, max_columns=10, max_cells=10**6, max_decoded_bytes=10**8)
        )
    assert refused.value.details["limit"] == "max_upload_rows"
