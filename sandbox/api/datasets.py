"""The catalogue (metadata and mock rows, never values) and uploads by stewards."""

from __future__ import annotations

from flask import Blueprint, request
from sqlalchemy import select

from core.errors import NotFound, ValidationFailed
from core.schema import DatasetSchema
from core.values import Role
from jobs.mock import mock_rows
from sandbox.api.routing import ANY_ROLE, endpoint, json_limits
from sandbox.api.schemas import DatasetList, DatasetOut, EpsilonCapIn, EpsilonCapOut, MockOut, MockQuery
from sandbox.api.services import dataset_out, datasets, ledger
from sandbox.db import read_session, writing
from sandbox.models import Dataset
from sandbox.service import budget
from sandbox.service.auth import Principal
from sandbox.service.datasets import parse_meta

STEWARD = frozenset({Role.STEWARD})
UPLOAD_PARTS = {
    "file": "the table, as CSV (header row; UTF-8, GBK or GB18030), Excel .xlsx (first row names the columns) or Parquet",
    "meta": "JSON: name, title, description, level, privacy_unit, columns {name: {role, type, bounds?, domain?}}",
}
VERSION_PARTS = {
    "file": UPLOAD_PARTS["file"],
    "meta": "optional JSON as for the first upload (same name); without it the current schema is kept",
}


def uploaded_file() -> tuple[str, bytes]:
    """The multipart part ``file`` of this request: its name and bytes (held in memory, ``sandbox.app.InMemoryRequest``)."""
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise ValidationFailed("expected multipart/form-data with parts 'file' and 'meta'", details={"field": "body"})
    part = request.files.get("file")
    if part is None or not part.filename:
        raise ValidationFailed("the multipart part 'file' is missing", details={"field": "file"})
    return part.filename, part.read()


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/datasets",
        "POST",
        summary="Upload a new dataset (encrypted at rest)",
        roles=STEWARD,
        response=DatasetOut,
        status=201,
        multipart=UPLOAD_PARTS,
        errors=(400, 401, 403, 409, 413),
    )
    def create_dataset(caller: Principal) -> DatasetOut:
        filename, data = uploaded_file()
        meta = parse_meta(request.form.get("meta"), json_limits())
        return dataset_out(datasets().create(caller, meta, filename, data), caller)

    @endpoint(
        bp,
        "/datasets/<dataset_id>/versions",
        "POST",
        summary="Upload a new version of a dataset",
        roles=STEWARD,
        response=DatasetOut,
        status=201,
        multipart=VERSION_PARTS,
        errors=(400, 401, 403, 404, 409, 413),
    )
    def add_version(caller: Principal, dataset_id: str) -> DatasetOut:
        filename, data = uploaded_file()
        raw = request.form.get("meta")
        meta = parse_meta(raw, json_limits()) if raw is not None else None
        return dataset_out(datasets().add_version(caller, dataset_id, meta, filename, data), caller)

    @endpoint(
        bp,
        "/datasets/<dataset_id>/epsilon-cap",
        "POST",
        summary="Set the dataset's global epsilon cap, shared by every grant on it",
        roles=STEWARD,
        body=EpsilonCapIn,
        response=EpsilonCapOut,
        errors=(400, 401, 403, 404, 409),
    )
    def set_epsilon_cap(caller: Principal, dataset_id: str, body: EpsilonCapIn) -> EpsilonCapOut:
        with writing() as session:
            return EpsilonCapOut.model_validate(budget.set_cap(session, ledger(), caller, dataset_id, body.epsilon_cap))

    @endpoint(bp, "/datasets", "GET", summary="The catalogue: metadata only", roles=ANY_ROLE, response=DatasetList, errors=(401,))
    def list_datasets(caller: Principal) -> DatasetList:
        rows = read_session().scalars(select(Dataset).order_by(Dataset.name))
        return DatasetList(items=[dataset_out(d, caller) for d in rows])

    @endpoint(bp, "/datasets/<dataset_id>", "GET", summary="One dataset's metadata", roles=ANY_ROLE, response=DatasetOut, errors=(401, 404))
    def get_dataset(caller: Principal, dataset_id: str) -> DatasetOut:
        dataset = read_session().get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound("no such dataset")
        return dataset_out(dataset, caller)

    @endpoint(
        bp,
        "/datasets/<dataset_id>/mock",
        "GET",
        summary="Synthetic rows with the dataset's schema",
        roles=ANY_ROLE,
        query=MockQuery,
        response=MockOut,
        errors=(400, 401, 404),
    )
    def mock(caller: Principal, dataset_id: str, query: MockQuery) -> MockOut:
        dataset = read_session().get(Dataset, dataset_id)
        if dataset is None:
            raise NotFound("no such dataset")
        schema = DatasetSchema.model_validate(dataset.current.schema)
        return MockOut(
            dataset=dataset.name,
            version=dataset.current.number,
            synthetic=True,
            note="synthetic rows drawn from the declared metadata only; no real record",
            columns=list(schema.columns),
            rows=mock_rows(schema, query.rows, query.seed),
        )
