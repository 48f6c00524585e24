"""Reading an uploaded table no larger than it may decode to: rows, columns, cells and bytes, checked while reading.

A Parquet file of a few hundred kilobytes can hold fifty million identical rows (dictionary and
run-length encoding): read whole, it takes gigabytes of the web process. So Parquet's own
metadata (row count, columns, the rows and sizes of each row group) is checked before any value is
decoded, and the decoded batches are counted again as they arrive, in case the metadata lies. CSV
is read once as text in a streaming pass that counts rows and bytes a block at a time and keeps
nothing, and only then parsed into typed columns (whose type inference needs the whole file).

Errors name the limit and its configuration variable, never a count or value from the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import UploadTooLarge

BATCH_ROWS = 64 * 1024  # Parquet values are decoded this many rows at a time
CSV_BLOCK_BYTES = 1 << 20  # the streaming CSV pass reads this much text at a time
# Decoded bytes per value of Parquet's fixed-width physical types (booleans: one byte, an upper bound).
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


@dataclass(frozen=True)
class IngestLimits:
    """The most an upload may decode to. Each limit has its configuration variable, named in the error."""

    max_rows: int
    max_columns: int
    max_cells: int
    max_decoded_bytes: int

    def __post_init__(self) -> None:
        if min(self.max_rows, self.max_columns, self.max_cells, self.max_decoded_bytes) < 1:
            raise ValueError("ingest limits must be positive")

    def check(self, rows: int, columns: int, decoded_bytes: int) -> None:
        """Raise ``UploadTooLarge`` naming the first limit that ``rows``, ``columns`` or ``decoded_bytes`` exceed."""
        for name, value, maximum, what in (
            ("max_upload_columns", columns, self.max_columns, "columns"),
            ("max_upload_rows", rows, self.max_rows, "rows"),
            ("max_upload_cells", rows * columns, self.max_cells, "cells (rows × columns)"),
            ("max_upload_decoded_bytes", decoded_bytes, self.max_decoded_bytes, "bytes once decoded"),
        ):
            if value > maximum:
                raise UploadTooLarge(
                    f"the file holds more than {maximum} {what} (SANDBOX_{name.upper()})",
                    details={"limit": name, "maximum": maximum},
                )


def read_parquet(data: bytes, limits: IngestLimits) -> pa.Table:
    """The Parquet file's table: metadata checked before decoding, decoded batches counted while reading."""
    source = pq.ParquetFile(pa.BufferReader(data))
    meta = source.metadata
    limits.check(meta.num_rows, meta.num_columns, _declared_bytes(meta))
    batches, rows, size = [], 0, 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS):
        rows, size = rows + batch.num_rows, size + batch.nbytes
        limits.check(rows, batch.num_columns, size)
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=source.schema_arrow)


def _declared_bytes(meta: pq.FileMetaData) -> int:
    """What the row groups say they decode to: rows × width for fixed-width values, else the uncompressed size."""
    total = 0
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            width = _FIXED_WIDTH.get(column.physical_type)
            total += row_group.num_rows * width if width else column.total_uncompressed_size
    return total


def read_csv(data: bytes, limits: IngestLimits) -> pa.Table:
    """The CSV file's table, parsed only after a streaming pass found it within ``limits``."""
    columns = _csv_width(data)
    limits.check(0, columns, 0)
    as_text = pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(columns)})
    reader = pacsv.open_csv(pa.BufferReader(data), read_options=_headless(), convert_options=as_text)
    rows, size = -1, 0  # the header is read as a row here
    for batch in reader:
        rows, size = rows + batch.num_rows, size + batch.nbytes
        limits.check(max(rows, 0), columns, size)
    table = pacsv.read_csv(pa.BufferReader(data))
    limits.check(table.num_rows, table.num_columns, table.nbytes)  # typed columns can be wider than their text
    return table


def _headless() -> pacsv.ReadOptions:
    return pacsv.ReadOptions(autogenerate_column_names=True, block_size=CSV_BLOCK_BYTES)


def _csv_width(data: bytes) -> int:
    """Columns of the header row, from the first block only."""
    return len(pacsv.open_csv(pa.BufferReader(data), read_options=_headless()).schema)
