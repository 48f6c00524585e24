"""Datasets and their versions: validate an upload, encrypt it, register it, read it back.

An upload is read within the app's ``IngestLimits`` (413 ``upload_too_large`` beyond them).

An upload is validated and encrypted before the database is touched; if registering then fails,
the ciphertext file is removed, so a failed upload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from core.names import name_key
from core.schema import DatasetMeta, DatasetSchema
from core.values import Role
from crypto import keywrap
from crypto.keyring import KeyStore
from jobs import ingest
from jobs.bounded import IngestLimits
from sandbox.db import Database
from sandbox.keys import version_context
from sandbox.models import Dataset, DatasetVersion, new_id
from sandbox.service import he_keys, json_input
from sandbox.service.auth import Principal
from sandbox.service.json_input import JsonLimits
from sandbox.service.ledger import Ledger
from sandbox.service.validation import parse_model
from sandbox.storage import EncryptedStore


def catalogue_count(count: int, base: int) -> int:
    """``count`` to the nearest multiple of ``base``; a non-empty table never shows 0."""
    rounded = (count + base // 2) // base * base
    return max(rounded, base) if count > 0 else 0


def parse_meta(raw: str | None, limits: JsonLimits) -> DatasetMeta:
    """The upload's ``meta`` part, read within ``limits`` like every JSON body."""
    if raw is None:
        raise ValidationFailed("the multipart part 'meta' (JSON) is missing", details={"field": "meta"})
    try:
        data = json_input.load(raw, limits, "the part 'meta'")
    except json_input.JsonTooDeep:
        raise
    except BadRequest as exc:  # malformed: a validation error of the field, as every other problem of meta
        raise ValidationFailed(exc.message, details={"field": "meta"}) from None
    return parse_model(DatasetMeta, data, "meta")


def ingest_limits(config: Mapping[str, Any]) -> IngestLimits:
    """The upload limits of the app's configuration, as the typed value ingest takes (it never reads configuration)."""
    return IngestLimits(
        max_rows=int(config["MAX_UPLOAD_ROWS"]),
        max_columns=int(config["MAX_UPLOAD_COLUMNS"]),
        max_cells=int(config["MAX_UPLOAD_CELLS"]),
        max_decoded_bytes=int(config["MAX_UPLOAD_DECODED_BYTES"]),
    )


class Datasets:
    """The dataset service; one per app, holding the database, key store, store and ledger."""

    def __init__(self, db: Database, keys: KeyStore, store: EncryptedStore, ledger: Ledger, limits: IngestLimits) -> None:
        self.db, self.keys, self.store, self.ledger, self.limits = db, keys, store, ledger, limits

    def _validate(self, meta: DatasetMeta, filename: str, data: bytes) -> ingest.Ingested:
        table = ingest.read_table(filename, data, self.limits, meta.encoding, meta.sheet)
        with self.db.sessions() as session:
            keys = he_keys.public_keys(session, ingest.paillier_keys(meta))
        return ingest.validate(meta, table, keys)

    def create(self, caller: Principal, meta: DatasetMeta, filename: str, data: bytes) -> Dataset:
        ingested = self._validate(meta, filename, data)
        with self.db.sessions() as session:
            if session.scalar(select(Dataset.id).where(Dataset.name == meta.name)) is not None:
                raise Conflict(f"a dataset named {meta.name!r} exists already", details={"field": "name"})
            key = name_key(meta.name)
            for other in session.scalars(select(Dataset.name)):
                if name_key(other) == key:  # one name to a query (DuckDB matches names without regard to case)
                    raise Conflict(
                        f"the dataset name {meta.name!r} differs only in case or Unicode normal form from the existing {other!r}",
                        details={"field": "name"},
                    )
        dataset_id = new_id()
        version, stored_path = self._seal(dataset_id, 1, caller, meta.schema_only(), ingested)
        try:
            with self.db.writing() as session:
                dataset = Dataset(
                    id=dataset_id,
                    org_id=caller.org_id,
                    name=meta.name,
                    title=meta.title,
                    description=meta.description,
                    level=meta.level.value,
                    created_by=caller.user_id,
                )
                session.add(dataset)
                session.flush()
                session.add(version)
                self.ledger.append(
                    session,
                    actor=caller.user_id,
                    action="dataset.create",
                    object_type="dataset",
                    object_id=dataset_id,
                    details={"name": meta.name, "level": meta.level.value, "columns": _roles(meta.schema_only())},
                )
                self._log_version(session, caller, dataset_id, version)
        except sqlalchemy.exc.IntegrityError:
            self.store.remove(stored_path)
            raise Conflict(f"a dataset named {meta.name!r} exists already", details={"field": "name"}) from None
        except BaseException:
            self.store.remove(stored_path)
            raise
        return self.get(dataset_id)

    def add_version(self, caller: Principal, dataset_id: str, meta: DatasetMeta | None, filename: str, data: bytes) -> Dataset:
        with self.db.sessions() as session:
            dataset = self._owned(session, caller, dataset_id)
            current = dataset.current
            schema = DatasetSchema.model_validate(current.schema)
            title, description, level = dataset.title, dataset.description, dataset.level
        if meta is not None:
            if meta.name != dataset.name:
                raise ValidationFailed("meta.name must be the dataset's name; datasets cannot be renamed", details={"field": "name"})
            title, description, level, schema = meta.title, meta.description, meta.level.value, meta.schema_only()
        full_meta = DatasetMeta(
            name=dataset.name,
            title=title,
            description=description,
            level=level,
            privacy_unit=schema.privacy_unit,
            columns=schema.columns,
            encoding=meta.encoding if meta is not None else None,
            sheet=meta.sheet if meta is not None else None,
        )
        ingested = self._validate(full_meta, filename, data)
        version, stored_path = self._seal(dataset_id, current.number + 1, caller, schema, ingested)
        try:
            with self.db.writing() as session:
                row = session.get(Dataset, dataset_id)
                assert row is not None
                row.title, row.description, row.level = title, description, level
                session.add(version)
                self._log_version(session, caller, dataset_id, version)
        except sqlalchemy.exc.IntegrityError:
            self.store.remove(stored_path)
            raise Conflict("another version was uploaded at the same time; try again") from None
        except BaseException:
            self.store.remove(stored_path)
            raise
        return self.get(dataset_id)

    def _seal(
        self, dataset_id: str, number: int, caller: Principal, schema: DatasetSchema, ingested: ingest.Ingested
    ) -> tuple[DatasetVersion, str]:
        version_id = new_id()
        data_key = keywrap.generate_key()
        wrapped, master_key_id = self.keys.wrap(data_key, context=version_context(version_id))
        stored = self.store.write(f"{dataset_id}/{version_id}.sbxe", ingested.table, data_key, key_id=version_id)
        version = DatasetVersion(
            id=version_id,
            dataset_id=dataset_id,
            number=number,
            schema=schema.model_dump(mode="json"),
            row_count=ingested.row_count,
            unit_count=ingested.unit_count,
            stored_bytes=stored.stored_bytes,
            ciphertext_sha256=stored.sha256,
            path=stored.path,
            wrapped_key=wrapped,
            master_key_id=master_key_id,
            created_by=caller.user_id,
        )
        return version, stored.path

    def _log_version(self, session: Session, caller: Principal, dataset_id: str, version: DatasetVersion) -> None:
        details: dict[str, Any] = {
            "dataset_id": dataset_id,
            "number": version.number,
            "rows": version.row_count,
            "units": version.unit_count,
            "ciphertext_sha256": version.ciphertext_sha256,
            "master_key_id": version.master_key_id,
        }
        self.ledger.append(
            session,
            actor=caller.user_id,
            action="dataset.version.create",
            object_type="dataset_version",
            object_id=version.id,
            details=details,
        )

    def _owned(self, session: Session, caller: Principal, dataset_id: str) -> Dataset:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound("no such dataset")
        if caller.role is not Role.STEWARD or dataset.org_id != caller.org_id:
            raise Forbidden("only a steward of the dataset's own organisation may change it")
        return dataset

    def get(self, dataset_id: str) -> Dataset:
        with self.db.sessions() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:
                raise NotFound("no such dataset")
            return dataset

    def read(self, version: DatasetVersion) -> pa.Table:
        """The plaintext table of a version, in memory only. For jobs inside the domain, never for the API."""
        return self.store.read(version.path, self.data_key(version), key_id=version.id)

    def data_key(self, version: DatasetVersion) -> bytes:
        """A version's unwrapped data key: for a job's child process, which decrypts the file itself in memory."""
        return self.keys.unwrap(version.wrapped_key, version.master_key_id, context=version_context(version.id))


def _roles(schema: DatasetSchema) -> dict[str, str]:
    return {name: spec.role.value for name, spec in schema.columns.items()}
