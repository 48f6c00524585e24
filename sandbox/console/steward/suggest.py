"""Column roles and types suggested for an upload, from its header and a bounded sample of its rows.

Read in memory only (the app keeps uploads in memory, ``sandbox.app.InMemoryRequest``): a CSV file's
first ``SAMPLE_BYTES`` cut at the last line break, a workbook's or Parquet file's first ``SAMPLE_ROWS``
rows through the same bounded readers as ingest. What comes back is each column's name, a role, a
type and the reason, never a value of the file: a suggestion is computed from the sample and the
sample is dropped. The steward confirms or changes every suggestion before the real upload.

Values that are 统一社会信用代码 (with a valid check character), 居民身份证号码 (with a valid check
digit) or 手机号码 make a column an ``identifier``, as do names that say so; numbers with few distinct
values, or names such as 年龄 or 地区, a ``quasi_identifier``; other numbers ``sensitive`` (they need
bounds, which the steward declares: bounds taken from the sample would publish its extremes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import pyarrow as pa
import pyarrow.csv as pacsv

from core.errors import ValidationFailed
from core.identifiers import is_credit_code, is_mobile_number, is_resident_id
from core.values import ColumnRole, ColumnType
from jobs import ingest
from jobs.bounded import IngestLimits

SAMPLE_BYTES = 256 * 1024  # of a CSV file: its header and the rows that fit
SAMPLE_ROWS = 500  # rows of the sample looked at
PATTERN_SHARE = 0.9  # of a column's non-empty sampled values that must match a pattern
FEW_DISTINCT = 20  # a numeric column with at most this many distinct values (and more rows) is a category

IDENTIFIER_NAMES = re.compile(
    r"信用代码|身份证|证件号|手机|电话|姓名|联系方式|credit.?code|uscc|id.?card|id.?number|passport|phone|mobile|^name$", re.IGNORECASE
)
QUASI_NAMES = re.compile(
    r"年龄|性别|地区|区县|行业|民族|学历|职业|邮编|出生|age|sex|gender|district|region|industry|zip|postcode|birth|educ|race",
    re.IGNORECASE,
)


class Reason(StrEnum):
    """Why a role was suggested; the console shows each in the steward's language."""

    CREDIT_CODE = "credit_code"
    RESIDENT_ID = "resident_id"
    MOBILE = "mobile"
    IDENTIFIER_NAME = "identifier_name"
    QUASI_NAME = "quasi_name"
    FEW_VALUES = "few_values"
    NUMBER = "number"
    TEXT = "text"
    EMPTY = "empty"


@dataclass(frozen=True)
class Suggestion:
    name: str
    role: ColumnRole
    type: ColumnType
    reason: Reason


PATTERNS: tuple[tuple[Callable[[str], bool], Reason], ...] = (
    (is_credit_code, Reason.CREDIT_CODE),
    (is_resident_id, Reason.RESIDENT_ID),
    (is_mobile_number, Reason.MOBILE),
)


def sample(filename: str, data: bytes, limits: IngestLimits) -> dict[str, list[str]]:
    """The file's columns and up to ``SAMPLE_ROWS`` of their values as text ('' for empty), read in memory."""
    fmt = ingest.detect_format(filename, data)
    if not data:
        raise ValidationFailed("the file is empty", details={"field": "file"})
    try:
        table = _csv_head(data) if fmt == "csv" else ingest.read_table(filename, data, limits).slice(0, SAMPLE_ROWS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        raise ValidationFailed(f"the file could not be read as {fmt}", details={"field": "file"}) from None
    return {
        name: ["" if v is None else str(v) for v in column.to_pylist()]
        for name, column in zip(table.column_names, table.columns, strict=True)
    }


def _csv_head(data: bytes) -> pa.Table:
    """The first rows of CSV bytes: cut at the last line break in the first ``SAMPLE_BYTES`` (a line break
    is one byte in UTF-8, GBK and GB18030 alike and never inside another character), read as text."""
    head = data[:SAMPLE_BYTES]
    if len(data) > SAMPLE_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    text = ingest.utf8_text(head)
    names = pacsv.open_csv(pa.BufferReader(text)).schema.names
    as_text = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True)
    return pacsv.read_csv(pa.BufferReader(text), convert_options=as_text).slice(0, SAMPLE_ROWS)


def suggest(columns: dict[str, list[str]]) -> list[Suggestion]:
    return [suggest_column(name, values) for name, values in columns.items()]


def suggest_column(name: str, values: Sequence[str]) -> Suggestion:
    present = [v.strip() for v in values if v.strip()]
    column_type = _type_of(present)
    for matches, reason in PATTERNS:
        if present and sum(map(matches, present)) >= PATTERN_SHARE * len(present):
            return Suggestion(name, ColumnRole.IDENTIFIER, ColumnType.STRING, reason)
    if IDENTIFIER_NAMES.search(name):  # numbers that identify keep their leading zeros as text
        return Suggestion(name, ColumnRole.IDENTIFIER, ColumnType.STRING if column_type.numeric else column_type, Reason.IDENTIFIER_NAME)
    role, reason = _role_by_shape(name, present, column_type)
    return Suggestion(name, role, column_type, reason)


def _role_by_shape(name: str, present: Sequence[str], column_type: ColumnType) -> tuple[ColumnRole, Reason]:
    if not present:
        return ColumnRole.ATTRIBUTE, Reason.EMPTY
    if QUASI_NAMES.search(name):
        return ColumnRole.QUASI_IDENTIFIER, Reason.QUASI_NAME
    if len(set(present)) <= FEW_DISTINCT < len(present):
        return ColumnRole.QUASI_IDENTIFIER, Reason.FEW_VALUES
    if column_type.numeric:
        return ColumnRole.SENSITIVE, Reason.NUMBER
    return ColumnRole.ATTRIBUTE, Reason.TEXT


def _type_of(values: Sequence[str]) -> ColumnType:
    """The narrowest type every value reads as; text when there is none."""
    if not values:
        return ColumnType.STRING
    for column_type, reads in (
        (ColumnType.BOOL, _is_bool),
        (ColumnType.INT, _is_int),
        (ColumnType.FLOAT, _is_float),
        (ColumnType.DATE, _is_date),
    ):
        if all(map(reads, values)):
            return column_type
    return ColumnType.STRING


def _is_bool(text: str) -> bool:
    return text.lower() in {"true", "false"}


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d{1,18}", text) is not None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
