"""The instance's services as one typed value, built from the configuration mapping without Flask.

``create_app`` builds one and hands its parts to the app; ``python -m sandbox worker`` builds one
from the same configuration and gives it to a ``Worker``. Nothing here is created at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto.keyring import KeyStore
from sandbox.db import Database, make_engine
from sandbox.runtime.custodian import DEFAULT_TIMEOUT, Custodian
from sandbox.service.datasets import Datasets, ingest_limits
from sandbox.service.ledger import Ledger
from sandbox.storage import EncryptedStore


@dataclass(frozen=True)
class Instance:
    """The database, key store, encrypted store, ledger, datasets and key custodian of one instance."""

    db: Database
    keys: KeyStore
    store: EncryptedStore
    ledger: Ledger
    datasets: Datasets
    custodian: Custodian | None  # None: SANDBOX_CUSTODIAN_URL is not set; he aggregates fail with that reason
    lease_seconds: float  # WORKER_LEASE_SECONDS
    poll_seconds: float  # WORKER_POLL_SECONDS
    job_memory_mb: int  # JOB_MEMORY_MB: DuckDB's working memory per job
    job_memory_bytes: int  # JOB_MEMORY_BYTES: a job's child process's address-space limit

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Instance:
        """Build every service from ``config`` (``sandbox.config`` has filled in the defaults)."""
        db = Database(make_engine(str(config["DATABASE_URL"])))
        keys = KeyStore(Path(config["MASTER_KEY_FILE"]))
        store = EncryptedStore(Path(config["INSTANCE_PATH"]) / "data")
        ledger = Ledger(keys, int(config["LEDGER_CHECKPOINT_EVERY"]))
        url = config.get("CUSTODIAN_URL")
        custodian = Custodian(str(url), timeout=float(config.get("CUSTODIAN_TIMEOUT_SECONDS", DEFAULT_TIMEOUT))) if url else None
        return cls(
            db,
            keys,
            store,
            ledger,
            Datasets(db, keys, store, ledger, ingest_limits(config)),
            custodian,
            float(config["WORKER_LEASE_SECONDS"]),
            float(config["WORKER_POLL_SECONDS"]),
            int(config["JOB_MEMORY_MB"]),
            int(config["JOB_MEMORY_BYTES"]),
        )

    def extensions(self) -> dict[str, Any]:
        """The services under the names the web app's ``extensions`` keep them by."""
        return {
            "sandbox.db": self.db,
            "sandbox.keys": self.keys,
            "sandbox.store": self.store,
            "sandbox.ledger": self.ledger,
            "sandbox.datasets": self.datasets,
            "sandbox.custodian": self.custodian,
        }

    @classmethod
    def of_extensions(cls, extensions: Mapping[str, Any], config: Mapping[str, Any]) -> Instance:
        """The services a web app holds now (tests replace some, e.g. the custodian's transport)."""
        return cls(
            extensions["sandbox.db"],
            extensions["sandbox.keys"],
            extensions["sandbox.store"],
            extensions["sandbox.ledger"],
            extensions["sandbox.datasets"],
            extensions.get("sandbox.custodian"),
            float(config["WORKER_LEASE_SECONDS"]),
            float(config["WORKER_POLL_SECONDS"]),
            int(config["JOB_MEMORY_MB"]),
            int(config["JOB_MEMORY_BYTES"]),
        )
