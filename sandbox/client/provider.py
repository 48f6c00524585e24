"""Provider-side encryption: chosen columns of a table encrypted under the domain's Paillier key, on the provider's machine.

Used by ``Client.upload_encrypted`` and ``python -m sandbox encrypt-upload``. Everything stays in
memory; what is uploaded is a Parquet file whose encrypted columns are ``fixed_size_binary``
ciphertexts, with the meta stating ``type: paillier`` and ``paillier: {key, scale}`` for each. The
domain (API, workers, operator) never sees those columns' values.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from crypto import paillier, paillier_bulk
from crypto.paillier import PublicKey


class EncryptionError(ValueError):
    """The provider's input cannot be encrypted as asked (names the column, never a value)."""


def parse_column_option(text: str) -> tuple[str, int]:
    """``income`` (scale 0) or ``income:2`` (two decimal digits kept). The scale follows the last colon, so a
    column whose name holds a colon states its scale: ``时间:小时:0``."""
    name, colon, scale = text.rpartition(":")
    if not colon:
        name, scale = text, ""
    if not name:
        raise EncryptionError(f"--encrypt {text!r}: expected COLUMN or COLUMN:SCALE")
    try:
        return name, paillier.check_scale(int(scale) if scale else 0)
    except ValueError:
        raise EncryptionError(
            f"--encrypt {text!r}: the scale must be an integer from 0 to {paillier.MAX_SCALE} (a name with a colon needs its scale)"
        ) from None


def choose_key(items: Sequence[Mapping[str, Any]], pinned: str | None) -> PublicKey:
    """The domain's key from ``GET /he/keys``: the pinned fingerprint, or the only one there is.

    Each key's fingerprint is recomputed from its ``n``, so a pinned fingerprint vouches for the modulus.
    """
    keys = [PublicKey.from_dict(dict(item), field="he key") for item in items]
    if pinned is not None:
        found = [k for k in keys if k.fingerprint == pinned]
        if not found:
            raise EncryptionError(f"the domain has no Paillier key with fingerprint {pinned}")
        return found[0]
    if len(keys) != 1:
        raise EncryptionError("the domain has no Paillier key registered" if not keys else "the domain has several keys: pin one (--key)")
    return keys[0]


def read_table(path: Path) -> pa.Table:
    """A Parquet file, or a CSV file in UTF-8 (a byte-order mark dropped), else GBK/GB18030, as the server reads uploads."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.read_table(path)
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):  # GB18030 is a superset of GBK
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return pacsv.read_csv(pa.BufferReader(text.encode("utf-8")))
    raise EncryptionError(f"{path.name} is not UTF-8, GBK or GB18030 text: save it as UTF-8")


def encrypt_table(table: pa.Table, columns: Mapping[str, int], public: PublicKey) -> pa.Table:
    """The table with each named column replaced by its ciphertexts (nulls stay null)."""
    for name, scale in columns.items():
        if name not in table.column_names:
            raise EncryptionError(f"column {name} is not in the file")
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)):
            raise EncryptionError(f"column {name} is not numeric (found {column.type})")
        values: list[float | int | None] = [_number(v) for v in column.to_pylist()]
        try:
            encrypted = paillier_bulk.encrypt_column(public, values, scale)
        except ValueError as exc:
            raise EncryptionError(f"column {name}: {exc}") from None
        table = table.set_column(table.schema.get_field_index(name), name, encrypted)
    return table


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise EncryptionError("a value is not a number")


def encrypted_meta(meta: Mapping[str, Any], columns: Mapping[str, int], public: PublicKey) -> dict[str, Any]:
    """The dataset meta with each encrypted column declared ``paillier`` (sensitive, its key and scale)."""
    declared = dict(meta.get("columns") or {})
    for name, scale in columns.items():
        spec = declared.get(name)
        if spec is None:
            raise EncryptionError(f"column {name} is not declared in the meta")
        described = {"description": spec["description"]} if spec.get("description") else {}
        declared[name] = {"role": "sensitive", "type": "paillier", "paillier": {"key": public.fingerprint, "scale": scale}, **described}
    return {**meta, "columns": declared}


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
