"""Access to the app's services from a request, and conversions from rows to response models."""

from __future__ import annotations

from flask import current_app

from core.schema import DatasetSchema
from core.values import Role
from policies.model import Policy
from sandbox.api.schemas import DatasetOut, GrantOut, Requested, VersionOut
from sandbox.models import Dataset, DatasetVersion, Grant
from sandbox.service.auth import Principal
from sandbox.service.datasets import Datasets, catalogue_count
from sandbox.service.grants import effective_status
from sandbox.service.ledger import Ledger


def ledger() -> Ledger:
    service: Ledger = current_app.extensions["sandbox.ledger"]
    return service


def datasets() -> Datasets:
    service: Datasets = current_app.extensions["sandbox.datasets"]
    return service


def sees_exact_counts(caller: Principal, dataset: Dataset) -> bool:
    """The owning bureau's stewards and auditors see exact sizes; everyone else a rounded catalogue."""
    return caller.role is Role.AUDITOR or (caller.role is Role.STEWARD and caller.org_id == dataset.org_id)


def version_out(version: DatasetVersion, exact: bool) -> VersionOut:
    schema = DatasetSchema.model_validate(version.schema)
    base = int(current_app.config["CATALOGUE_COUNT_BASE"])
    return VersionOut(
        id=version.id,
        number=version.number,
        row_count=version.row_count if exact else catalogue_count(version.row_count, base),
        unit_count=version.unit_count if exact else catalogue_count(version.unit_count, base),
        stored_bytes=version.stored_bytes if exact else None,
        columns=schema.columns,
        privacy_unit=schema.privacy_unit,
        created_at=version.created_at,
    )


def dataset_out(dataset: Dataset, caller: Principal) -> DatasetOut:
    """The catalogue entry: metadata, never a value; counts rounded unless ``caller`` sees exact ones."""
    current = dataset.current
    schema = DatasetSchema.model_validate(current.schema)
    exact = sees_exact_counts(caller, dataset)
    versions = [version_out(v, exact) for v in dataset.versions]
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        title=dataset.title,
        description=dataset.description,
        level=dataset.level,
        org_id=dataset.org_id,
        privacy_unit=schema.privacy_unit,
        columns=schema.columns,
        row_count=next(v.row_count for v in versions if v.id == current.id),
        unit_count=next(v.unit_count for v in versions if v.id == current.id),
        current_version=current.number,
        versions=versions,
        created_at=dataset.created_at,
    )


def grant_out(grant: Grant) -> GrantOut:
    latest = grant.policies[-1] if grant.policies else None
    return GrantOut(
        id=grant.id,
        org_id=grant.org_id,
        bureau_org_id=grant.bureau_org_id,
        requested_by=grant.requested_by,
        dataset_ids=[link.dataset_id for link in grant.datasets],
        datasets=[link.dataset.name for link in grant.datasets],
        scenario=grant.scenario,
        requested=Requested.model_validate(grant.requested),
        status=effective_status(grant),
        reason=grant.reason,
        policy=Policy.model_validate(latest.policy) if latest else None,
        policy_version=latest.version if latest else None,
        expires_at=grant.expires_at,
        created_at=grant.created_at,
        decided_at=grant.decided_at,
        decided_by=grant.decided_by,
    )
