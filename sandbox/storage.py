"""Encrypted dataset files: Parquet built in memory, sealed with ``crypto.envelope``, written atomically.

Plaintext never touches disk: the Parquet bytes exist only in memory buffers, and only the
envelope's ciphertext is written. Each dataset version has its own random data key, wrapped by
the master key and bound to the version's id.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import IntegrityError
from crypto import envelope

if TYPE_CHECKING:
    from flask import Flask


@dataclass(frozen=True)
class Stored:
    path: str  # relative to the store's root
    stored_bytes: int
    sha256: str


class EncryptedStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, table: pa.Table, data_key: bytes, *, key_id: str) -> Stored:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        plaintext = sink.getvalue()
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with open(tmp, "wb") as handle:
            written = envelope.encrypt_to(_Hashing(handle, digest), data_key, memoryview(plaintext), key_id=key_id)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return Stored(relative, written, digest.hexdigest())

    def read(self, relative: str, data_key: bytes, *, key_id: str) -> pa.Table:
        """Decrypt into memory and parse; any tampering raises ``IntegrityError``."""
        blob = (self.root / relative).read_bytes()
        plaintext = envelope.decrypt(data_key, blob, key_id=key_id)
        try:
            return pq.read_table(pa.BufferReader(plaintext))
        except pa.ArrowInvalid:
            raise IntegrityError("stored dataset is not a readable table") from None

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)


class _Hashing:
    """A write-through file wrapper that hashes the ciphertext as it is written."""

    def __init__(self, handle: envelope.ByteSink, digest: hashlib._Hash) -> None:
        self._handle = handle
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._handle.write(data)


def get_store() -> EncryptedStore:
    from flask import current_app  # noqa: PLC0415 - the web app's helper; workers import this module without Flask

    store: EncryptedStore = current_app.extensions["sandbox.store"]
    return store


def get_store_of(app: Flask) -> EncryptedStore:
    found: EncryptedStore = app.extensions["sandbox.store"]
    return found
