"""The custodian's settings, from ``SANDBOX_CUSTODIAN_*`` environment variables (read once, at start).

``SANDBOX_CUSTODIAN_DIR``          its directory; default ``<SANDBOX_INSTANCE_PATH or ./instance>/custodian``
``SANDBOX_CUSTODIAN_DOMAIN_KEY``   the domain's Ed25519 public key (PEM, from ``python -m sandbox keys
                                   export-public``); default ``<dir>/domain.pub``
``SANDBOX_CUSTODIAN_MAX_AGE``      seconds a release decision stays valid after it was issued; default 300
``SANDBOX_CUSTODIAN_MAX_CELLS``    ciphertexts one request may ask for; default 100000
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_AGE = 300
DEFAULT_MAX_CELLS = 100_000
CLOCK_SKEW_SECONDS = 60  # a decision "issued" this far in the future still counts (clocks differ a little)


@dataclass(frozen=True)
class Settings:
    directory: Path
    domain_key_file: Path
    max_age_seconds: int = DEFAULT_MAX_AGE
    max_cells: int = DEFAULT_MAX_CELLS

    @property
    def keyring_file(self) -> Path:
        return self.directory / "master.key"

    @property
    def key_file(self) -> Path:
        return self.directory / "paillier.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "decryptions.log"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        instance = Path(env.get("SANDBOX_INSTANCE_PATH") or "instance")
        directory = Path(env.get("SANDBOX_CUSTODIAN_DIR") or instance / "custodian").resolve()
        domain_key = Path(env.get("SANDBOX_CUSTODIAN_DOMAIN_KEY") or directory / "domain.pub")
        return cls(
            directory=directory,
            domain_key_file=domain_key,
            max_age_seconds=_positive(env, "SANDBOX_CUSTODIAN_MAX_AGE", DEFAULT_MAX_AGE),
            max_cells=_positive(env, "SANDBOX_CUSTODIAN_MAX_CELLS", DEFAULT_MAX_CELLS),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer")
    return value
