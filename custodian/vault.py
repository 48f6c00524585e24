"""The custodian's key files: its own master keyring and the Paillier key pair, the private half wrapped.

``paillier.json`` holds the public key in the clear and the private key (its primes) wrapped by the
custodian's master key (AES-256-GCM, ``crypto.keywrap``), bound to the key's fingerprint. Reading
the file alone, or copying the sandbox's keyring, decrypts nothing: the master key is in the
custodian's own ``master.key`` (mode 0600, in a 0700 directory).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phe import paillier as phe_paillier

from core.errors import Conflict
from crypto import paillier
from crypto.keyring import KeyStore
from crypto.paillier import PublicKey
from custodian.config import Settings


def key_context(fingerprint: str) -> str:
    return f"custodian-paillier:{fingerprint}"


class Vault:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyring = KeyStore(settings.keyring_file)

    def exists(self) -> bool:
        return self.settings.key_file.exists()

    def init(self, bits: int) -> tuple[PublicKey, bool]:
        """Create the directory, keyring and key pair unless they exist; (public key, created now)."""
        directory = self.settings.directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if self.exists():
            return self.public(), False
        if not self.keyring.exists():
            self.keyring.create()
        pair = paillier.generate(bits)
        wrapped, master_key_id = self.keyring.wrap(paillier.private_to_bytes(pair.private), context=key_context(pair.public.fingerprint))
        body = {
            "public": pair.public.as_dict(),
            "wrapped_private": base64.b64encode(wrapped).decode(),
            "master_key_id": master_key_id,
            "created_at": datetime.now(UTC).isoformat(),
        }
        _write_private(self.settings.key_file, json.dumps(body, indent=2))
        return pair.public, True

    def _record(self) -> dict[str, Any]:
        try:
            record: dict[str, Any] = json.loads(self.settings.key_file.read_text())
        except FileNotFoundError:
            raise Conflict(
                f"the custodian has no key yet: run `python -m sandbox custodian init` (directory {self.settings.directory})"
            ) from None
        return record

    def public(self) -> PublicKey:
        return PublicKey.from_dict(self._record()["public"], field="custodian key file")

    def private(self) -> phe_paillier.PaillierPrivateKey:
        """The private key, unwrapped for one use: never kept in a module global, never logged."""
        record = self._record()
        public = PublicKey.from_dict(record["public"], field="custodian key file")
        secret = self.keyring.unwrap(
            base64.b64decode(record["wrapped_private"]), record["master_key_id"], context=key_context(public.fingerprint)
        )
        return paillier.private_from_bytes(public, secret)

    def decrypt(self, ciphertexts: list[int]) -> list[int]:
        """Mantissas mod n of already-authorised ciphertexts."""
        private = self.private()
        return [paillier.decrypt(private, c) for c in ciphertexts]


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def append_log(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line to the custodian's log (O_APPEND: concurrent writers never interleave a line)."""
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
