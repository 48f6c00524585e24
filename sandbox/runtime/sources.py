"""Where a run's tables come from, as small picklable values the child process loads itself.

The parent never hands the child plaintext through a file: a ``SealedTable`` names the encrypted
dataset file and carries the data key the parent unwrapped (the child gets no master key and no
database), and a ``MockTable`` says how to make a dry run's synthetic rows. Both cross the pipe to
the child, which decrypts or generates the table in its own memory, under its own memory limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from core.schema import DatasetSchema
from jobs.mock import mock_table
from sandbox.storage import EncryptedStore


@dataclass(frozen=True)
class SealedTable:
    """One dataset version's encrypted file under ``root`` and its unwrapped data key (memory and pipe only)."""

    root: str
    path: str
    data_key: bytes
    key_id: str

    def load(self) -> pa.Table:
        return EncryptedStore(Path(self.root)).read(self.path, self.data_key, key_id=self.key_id)

    def __repr__(self) -> str:  # never print the key
        return f"SealedTable({self.path!r})"


@dataclass(frozen=True)
class MockTable:
    """``rows`` synthetic rows of ``schema`` (``seed`` makes them reproducible)."""

    schema: DatasetSchema
    rows: int
    seed: int | None

    def load(self) -> pa.Table:
        return mock_table(self.schema, self.rows, self.seed)


TableSource = SealedTable | MockTable
