"""Reading an uploaded CSV, Excel (``.xlsx``) or Parquet file into an Arrow table, validated against its declared metadata.

CSV text is UTF-8 (a byte-order mark is dropped), GBK or GB18030, as bureaus' exports are: the
encoding the steward states (``meta.encoding``) is used strictly, and without one UTF-8 is tried,
then GB18030 (a superset of GBK and GB2312). Text that is neither is refused, never stored as
mojibake. Chinese text in GBK is practically never valid UTF-8 (its byte pairs break UTF-8's
continuation rules), so the order of the guesses is safe; ``meta.encoding`` removes the guess.
Header names are matched to the declared names in Unicode NFC, so an export that spells a name in
decomposed form still matches. Workbooks are read by ``jobs.workbook``.

Everything happens in memory, within ``IngestLimits`` checked while reading (``jobs.bounded``).
Error messages name the column and the problem and carry counts,
never a value from the file: the file's content is exactly what must not leak, even into an error.

Columns a provider encrypted (``type: paillier``) must arrive as binary ciphertexts (Parquet) under a
key registered in the domain (``he_keys``); they are checked with ``crypto.paillier.check_ciphertexts``
and stored as ``fixed_size_binary``.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ValidationFailed
from core.schema import ColumnSpec, DatasetMeta
from core.values import ColumnType, Encoding
from crypto import paillier
from crypto.paillier import PublicKey
from jobs import bounded, workbook
from jobs.bounded import IngestLimits

PARQUET_MAGIC = b"PAR1"
UTF8_BOM = codecs.BOM_UTF8

ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.INT: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.STRING: pa.string(),
    ColumnType.BOOL: pa.bool_(),
    ColumnType.DATE: pa.date32(),
}


@dataclass(frozen=True)
class Ingested:
    table: pa.Table
    row_count: int
    unit_count: int


def detect_format(filename: str, data: bytes) -> str:
    """``csv``, ``xlsx`` or ``parquet``, from the name and the bytes; they must agree."""
    lower = filename.lower()
    is_parquet = data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC
    if lower.endswith((".parquet", ".pq")):
        if not is_parquet:
            raise ValidationFailed("the file is named as Parquet but is not a Parquet file", details={"field": "file"})
        return "parquet"
    if lower.endswith(".xlsx"):
        if data[:4] != workbook.XLSX_MAGIC:
            raise ValidationFailed("the file is named as an Excel workbook (.xlsx) but is not one", details={"field": "file"})
        return "xlsx"
    if lower.endswith(".csv"):
        if is_parquet or b"\x00" in data[:65536]:
            raise ValidationFailed("the file is named as CSV but is not CSV text", details={"field": "file"})
        return "csv"
    if lower.endswith(".xls"):
        raise ValidationFailed("old Excel files (.xls) are not read: save the sheet as .xlsx or CSV", details={"field": "file"})
    raise ValidationFailed("the file name must end in .csv, .xlsx or .parquet", details={"field": "file"})


def read_table(filename: str, data: bytes, limits: IngestLimits, encoding: Encoding | None = None, sheet: str | None = None) -> pa.Table:
    """The file as an Arrow table, refused with ``UploadTooLarge`` as soon as it is seen to exceed ``limits``.

    ``encoding`` is the CSV text's stated encoding (detected without it); ``sheet`` the workbook's sheet
    to read (its first without it). Either given for a file of another format is refused.
    """
    fmt = detect_format(filename, data)
    if not data:
        raise ValidationFailed("the file is empty", details={"field": "file"})
    if encoding is not None and fmt != "csv":
        raise ValidationFailed(f"meta.encoding is for CSV files; this is a {fmt} file", details={"field": "encoding"})
    if sheet is not None and fmt != "xlsx":
        raise ValidationFailed(f"meta.sheet is for Excel workbooks; this is a {fmt} file", details={"field": "sheet"})
    try:
        if fmt == "parquet":
            return bounded.read_parquet(data, limits)
        if fmt == "xlsx":
            return workbook.read_xlsx(data, limits, sheet)
        return bounded.read_csv(utf8_text(data, encoding), limits)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ValidationFailed(f"the file could not be read as {fmt}: {_safe_reason(str(exc))}", details={"field": "file"}) from None


def utf8_text(data: bytes, encoding: Encoding | None = None) -> bytes:
    """CSV bytes as UTF-8 without a byte-order mark: decoded strictly as ``encoding``, or as UTF-8, else GB18030.

    Refused (400, naming the encodings tried and the byte offset, never a byte of the file) when the
    text is none of them.
    """
    if encoding is None:
        try:
            _check(data, Encoding.UTF8)
            return data.removeprefix(UTF8_BOM)
        except UnicodeDecodeError:
            pass
        try:
            return _transcoded(data, Encoding.GB18030)
        except UnicodeDecodeError as error:
            raise ValidationFailed(
                f"the CSV file is not UTF-8, GBK or GB18030 text (undecodable bytes at offset {error.start}); "
                "save it as UTF-8, or state meta.encoding if it is one of these",
                details={"field": "file"},
            ) from None
    try:
        if encoding is Encoding.UTF8:
            _check(data, encoding)
            return data.removeprefix(UTF8_BOM)
        return _transcoded(data, encoding)
    except UnicodeDecodeError as error:
        raise ValidationFailed(
            f"the CSV file is not {encoding.value} text as meta.encoding states (undecodable bytes at offset {error.start})",
            details={"field": "file"},
        ) from None


def _check(data: bytes, encoding: Encoding, chunk: int = 1 << 20) -> None:
    """Raise ``UnicodeDecodeError`` (its offset in ``data``, none of its bytes) unless ``data`` decodes strictly."""
    for _ in _decoded(data, encoding, chunk):
        pass


def _transcoded(data: bytes, encoding: Encoding) -> bytes:
    """``data`` decoded strictly and encoded as UTF-8, a chunk at a time (no whole-file string)."""
    return b"".join(text.encode("utf-8") for text in _decoded(data, encoding))


def _decoded(data: bytes, encoding: Encoding, chunk: int = 1 << 20) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding.value)()
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        try:
            yield decoder.decode(view[start : start + chunk], final=start + chunk >= len(data))
        except UnicodeDecodeError as error:
            raise UnicodeDecodeError(error.encoding, b"", start + error.start, start + error.end, error.reason) from None


def _safe_reason(message: str) -> str:
    """Keep a parser's row number and column counts; drop any echo of the file's content."""
    row = re.search(r"Row #(\d+)", message)
    counts = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if counts:
        where = f"row {row.group(1)}: " if row else ""
        return f"{where}expected {counts.group(1)} columns, got {counts.group(2)}"
    if "Empty CSV" in message:
        return "no header row"
    return "malformed content"


def paillier_keys(meta: DatasetMeta) -> set[str]:
    """Fingerprints of the Paillier keys the meta's encrypted columns name."""
    return {spec.paillier.key for spec in meta.columns.values() if spec.paillier is not None}


def validate(meta: DatasetMeta, table: pa.Table, keys: Mapping[str, PublicKey] | None = None) -> Ingested:
    """Cast every column to its declared type and check roles, bounds and domains. All problems at once.

    ``keys`` are the registered Paillier keys by fingerprint (``paillier_keys`` says which to look up).
    """
    table = _declared_spelling(meta, table)
    problems = _shape_problems(meta, table)
    if problems:
        _raise(problems)
    arrays = {}
    for name, spec in meta.columns.items():
        column, found = _checked(table.column(name), spec, keys or {})
        problems.extend({"column": name, "problem": p} for p in found)
        if column is not None:
            arrays[name] = column
    if not problems:
        nulls = arrays[meta.privacy_unit].null_count
        if nulls:
            problems.append({"column": meta.privacy_unit, "problem": f"the privacy unit is missing in {nulls} rows"})
        arrays[meta.privacy_unit], found = _one_value_per_unit(arrays[meta.privacy_unit])
        problems.extend({"column": meta.privacy_unit, "problem": p} for p in found)
    if problems:
        _raise(problems)
    result = pa.table([arrays[name] for name in meta.columns], names=list(meta.columns))
    units = pc.count_distinct(result.column(meta.privacy_unit)).as_py()
    return Ingested(result, result.num_rows, units)


def _one_value_per_unit(units: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[str]]:
    """A decimal unit column whose equal units are equal bit for bit, or its problems.

    Arrow counts distinct units bit for bit, SQL by value: ``0.0`` and ``-0.0`` (or two NaNs of other
    signs) would be two units in the version's count and one in a query's. A version whose every row
    is then counted as a different unit would let a query count one person's rows as several units
    (``jobs.population``). Negative zero becomes zero; a NaN is no unit and is refused.
    """
    if not pa.types.is_floating(units.type):
        return units, []
    nans = pc.sum(pc.is_nan(units)).as_py() or 0
    if nans:
        return units, [f"the privacy unit is not a number (NaN) in {nans} rows"]
    return pc.add(units, pa.scalar(0.0, units.type)), []  # -0.0 + 0.0 is 0.0; every other value is unchanged


def _declared_spelling(meta: DatasetMeta, table: pa.Table) -> pa.Table:
    """``table`` with each header that equals a declared name in NFC renamed to the declared spelling."""
    declared = {unicodedata.normalize("NFC", name): name for name in meta.columns}
    names = [declared.get(unicodedata.normalize("NFC", name), name) for name in table.column_names]
    return table if names == table.column_names else table.rename_columns(names)


def _shape_problems(meta: DatasetMeta, table: pa.Table) -> list[dict[str, str]]:
    """The header against the metadata. A header that names no declared column is reported by its position,
    never quoted: it is the file's text, and in a file without a header row it is the first row's values."""
    problems: list[dict[str, str]] = []
    names = table.column_names
    for name in sorted({n for n in names if names.count(n) > 1 and n in meta.columns}):
        problems.append({"column": name, "problem": "appears more than once in the file"})
    for position, name in enumerate(names, start=1):
        if name not in meta.columns:
            problems.append(
                {"column": f"#{position}", "problem": f"column {position} of the file has a header that names no declared column"}
            )
    for name in meta.columns:
        if name not in names:
            problems.append({"column": name, "problem": "is declared but not in the file"})
    if table.num_rows == 0:
        problems.append({"column": "*", "problem": "the file has no rows"})
    return problems


def _checked(column: pa.ChunkedArray, spec: ColumnSpec, keys: Mapping[str, PublicKey]) -> tuple[pa.ChunkedArray | None, list[str]]:
    """The column cast to its declared type (None if it cannot be) and its problems."""
    if spec.type is ColumnType.PAILLIER:
        found = _ciphertexts(column, spec, keys)
        return (None, found) if isinstance(found, list) else (found, [])
    cast, problem = _cast(column, spec)
    if problem:
        return None, [problem]
    return cast, _value_problems(cast, spec)


def _cast(column: pa.ChunkedArray, spec: ColumnSpec) -> tuple[pa.ChunkedArray, str | None]:
    target = ARROW_TYPES[spec.type]
    if column.type == target:
        return column, None
    if spec.type is ColumnType.STRING and not pa.types.is_string(column.type):
        return pc.cast(column, pa.string()), None
    try:
        return pc.cast(column, target, safe=True), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column, f"values are not of type {spec.type.value} (found {column.type})"


def _ciphertexts(column: pa.ChunkedArray, spec: ColumnSpec, keys: Mapping[str, PublicKey]) -> pa.ChunkedArray | list[str]:
    """The column as fixed-size ciphertexts of its registered key, or its problems (counts only)."""
    assert spec.paillier is not None
    key = keys.get(spec.paillier.key)
    if key is None:
        return [f"is encrypted under Paillier key {spec.paillier.key[:16]}..., which is not registered in this domain (GET /he/keys)"]
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) or pa.types.is_fixed_size_binary(column.type)):
        return [f"ciphertexts must be binary values (a Parquet binary column), found {column.type}"]
    problems = paillier.check_ciphertexts(key, column, "")
    if problems:
        return problems
    return pc.cast(column, paillier.arrow_type(key))


def _value_problems(column: pa.ChunkedArray, spec: ColumnSpec) -> list[str]:
    problems = []
    if spec.bounds is not None:
        lower, upper = spec.bounds.lower, spec.bounds.upper
        outside = pc.sum(pc.or_(pc.less(column, lower), pc.greater(column, upper))).as_py() or 0
        if outside:
            problems.append(f"{outside} values lie outside the declared bounds [{lower:g}, {upper:g}]")
    if spec.domain is not None:
        domain = pa.array([str(v) for v in spec.domain])
        as_text = pc.cast(column, pa.string())
        unknown = pc.and_(pc.is_valid(as_text), pc.invert(pc.is_in(as_text, value_set=domain)))
        outside = pc.sum(unknown).as_py() or 0
        if outside:
            problems.append(f"{outside} values are not in the declared domain")
    return problems


def _raise(problems: list[dict[str, str]]) -> None:
    first = problems[0]
    raise ValidationFailed(f"column {first['column']}: {first['problem']}", details={"problems": problems})
