"""The demo's he slice (``python -m sandbox he demo``): PUMS with income encrypted under the custodian's key, and a grant.

Run after the custodian's key is registered (``make run`` does it). The demo steward plays the
provider: income is encrypted here with ``paillier_bulk.encrypt_column``, as ``encrypt-upload``
would on the provider's machine, and the Parquet file goes through the normal upload path.
Idempotent: the dataset and the grant are created only when missing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select

from core.errors import Conflict
from core.schema import DatasetMeta
from core.values import JobKind
from policies.model import Aggregate, ColumnUse, Policy
from sandbox.app import get_datasets_of, get_ledger_of
from sandbox.client import provider
from sandbox.db import get_db_of
from sandbox.demo.seed import DATA, PUMS_META, USERS
from sandbox.models import Dataset, Grant, User
from sandbox.service import grants, he_keys
from sandbox.service.auth import principal_of

NAME = "pums_he"
SCENARIO = "Demo: income totals by race, computed on income the provider encrypted (he aggregate)."
POLICY = Policy(
    columns={NAME: {"sex": ColumnUse.DIMENSION, "educ": ColumnUse.DIMENSION, "race": ColumnUse.DIMENSION, "income": ColumnUse.MEASURE}},
    aggregates=frozenset({Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG}),
    job_kinds=frozenset({JobKind.HE}),
)


def load(app: Flask) -> dict[str, Any]:
    """Create the encrypted dataset and the analyst's he grant if missing; what exists, by name."""
    db, ledger, datasets = get_db_of(app), get_ledger_of(app), get_datasets_of(app)
    with db.sessions() as session:
        keys = he_keys.all_keys(session)
        people = {name: session.scalar(select(User).where(User.name == name)) for name, _, _ in USERS}
        if people["steward"] is None or people["analyst"] is None:
            raise Conflict("the demo users are missing: run `python -m sandbox init --demo` first")
        steward, analyst = principal_of(people["steward"]), principal_of(people["analyst"])
        dataset = session.scalar(select(Dataset).where(Dataset.name == NAME))
    if not keys:
        raise Conflict("no Paillier key is registered: run `python -m sandbox he register-key` first")
    public = he_keys.public_key(keys[0])
    if dataset is None:
        table = provider.encrypt_table(provider.read_table(DATA / "pums.csv"), {"income": 0}, public)
        declared = PUMS_META | {"name": NAME, "title": "Census PUMS, income encrypted by its provider"}
        meta = provider.encrypted_meta(declared, {"income": 0}, public)
        dataset = datasets.create(steward, DatasetMeta.model_validate(meta), f"{NAME}.parquet", provider.parquet_bytes(table))
    with db.writing() as session:
        grant = session.scalar(select(Grant).where(Grant.scenario == SCENARIO))
        if grant is None:
            grant = grants.request_grant(session, ledger, analyst, [dataset.id], SCENARIO, {"job_kinds": ["he"]})
            grants.approve(session, ledger, steward, grant.id, POLICY, datetime.now(UTC) + timedelta(days=365))
        return {"dataset": NAME, "dataset_id": dataset.id, "grant_id": grant.id, "key": public.fingerprint}
