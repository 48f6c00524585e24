"""The demo's scoring slice: ``persons`` (PUMS with ID-number-like identifiers), a scoring grant, consents.

Loaded by ``python -m sandbox init --demo`` so that the README's scoring example (``Client.score``)
runs as written: the demo bank (the analyst) holds an approved ``he`` grant whose policy allows
scoring on ``age`` and ``income``, and the first 100 persons (``ID000001`` .. ``ID000100``) have
consented for a year. Scoring needs no custodian: the bank decrypts with a key pair of its own.
Idempotent: the dataset, the grant and the consents are created only when missing.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select

from core.errors import Conflict
from core.schema import DatasetMeta
from policies.model import Policy
from sandbox.app import get_datasets_of, get_ledger_of
from sandbox.db import get_db_of
from sandbox.demo.seed import DATA, USERS
from sandbox.models import Dataset, Grant, User
from sandbox.service import consents, grants
from sandbox.service.auth import principal_of

NAME = "persons"
SCENARIO = "Demo: credit scoring of consenting loan applicants (he score)."
CONSENTING = 100

META: dict[str, Any] = {
    "name": NAME,
    "title": "Persons with ID numbers (Census PUMS sample, 1,000 persons)",
    "description": "The PUMS sample with each person's id written as an ID number (ID000001...), for scoring demos.",
    "level": "重要",
    "privacy_unit": "person_id",
    "columns": {
        "person_id": {"role": "identifier", "type": "string"},
        "age": {"role": "quasi_identifier", "type": "int", "bounds": [0, 100]},
        "educ": {"role": "quasi_identifier", "type": "int", "domain": list(range(1, 17))},
        "income": {"role": "sensitive", "type": "int", "bounds": [0, 500000]},
        "married": {"role": "attribute", "type": "int", "domain": [0, 1]},
    },
}
POLICY = Policy.model_validate(
    {
        "columns": {NAME: {"age": "measure", "income": "measure", "educ": "dimension"}},
        "aggregates": ["count"],
        "job_kinds": ["he"],
        "he": {"score": {"max_entities_per_job": 1000, "max_jobs_per_entity": 4, "period_days": 30}},
    }
)


def person(pid: int) -> str:
    return f"ID{pid:06d}"


def persons_csv() -> bytes:
    """``persons`` built from the demo's PUMS file: the person id as an ID number, income as an integer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(META["columns"])
    with (DATA / "pums.csv").open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            writer.writerow([person(int(row["pid"])), row["age"], row["educ"], int(float(row["income"])), row["married"]])
    return out.getvalue().encode("utf-8")


def load(app: Flask) -> dict[str, str]:
    """Create the dataset, the analyst's scoring grant and its first consents if missing; their ids."""
    db, ledger, datasets = get_db_of(app), get_ledger_of(app), get_datasets_of(app)
    with db.sessions() as session:
        people = {name: session.scalar(select(User).where(User.name == name)) for name, _, _ in USERS}
        if people["steward"] is None or people["analyst"] is None:
            raise Conflict("the demo users are missing: run `python -m sandbox init --demo` first")
        steward, analyst = principal_of(people["steward"]), principal_of(people["analyst"])
        dataset = session.scalar(select(Dataset).where(Dataset.name == NAME))
    if dataset is None:
        dataset = datasets.create(steward, DatasetMeta.model_validate(META), f"{NAME}.csv", persons_csv())
    with db.writing() as session:
        grant = session.scalar(select(Grant).where(Grant.scenario == SCENARIO))
        if grant is None:
            now = datetime.now(UTC)
            grant = grants.request_grant(session, ledger, analyst, [dataset.id], SCENARIO, {"job_kinds": ["he"]})
            grants.approve(session, ledger, steward, grant.id, POLICY, now + timedelta(days=365))
            entities = [person(p) for p in range(1, CONSENTING + 1)]
            consents.register(session, ledger, steward, grant.id, entities, now + timedelta(days=365))
        return {"dataset_id": dataset.id, "grant_id": grant.id}
