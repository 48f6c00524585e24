"""A master keyring in one file on disk, and wrapping secrets under its current key.

Used by the sandbox (``sandbox.keys``) and, with its own file, by the key custodian
(``custodian``): each party's master key stays in its own file, so that neither can unwrap the
other's secrets. The file holds the current master key and, during a rotation, the previous one,
so that a rotation interrupted at any point can simply be run again.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import Conflict, InternalError
from crypto import keywrap


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes]

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise InternalError(f"master key {key_id} is not in the keyring") from None


class KeyStore:
    """Reads the keyring file on each use, so that a rotation by the CLI is seen by running servers."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Keyring:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise Conflict(f"no master keyring at {self.path}: run `python -m sandbox init` (or `custodian init`)") from None
        keys = {key_id: base64.b64decode(value) for key_id, value in raw["keys"].items()}
        return Keyring(current=raw["current"], keys=keys)

    def save(self, ring: Keyring) -> None:
        """Write atomically with mode 0600: a crash leaves the old file or the new one, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"current": ring.current, "keys": {k: base64.b64encode(v).decode() for k, v in ring.keys.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def create(self) -> Keyring:
        ring = Keyring(current=keywrap.new_key_id(), keys={})
        ring = Keyring(current=ring.current, keys={ring.current: keywrap.generate_key()})
        self.save(ring)
        return ring

    def wrap(self, key: bytes, *, context: str) -> tuple[bytes, str]:
        ring = self.load()
        return keywrap.wrap(ring.key(ring.current), ring.current, key, context=context), ring.current

    def unwrap(self, wrapped: bytes, master_key_id: str, *, context: str) -> bytes:
        ring = self.load()
        return keywrap.unwrap(ring.key(master_key_id), master_key_id, wrapped, context=context)

    def unwrap_many(self, items: Sequence[tuple[bytes, str, str]]) -> list[bytes]:
        """``unwrap`` of each (wrapped, master key id, context), from one read of the keyring."""
        ring = self.load()
        return [keywrap.unwrap(ring.key(key_id), key_id, wrapped, context=context) for wrapped, key_id, context in items]
