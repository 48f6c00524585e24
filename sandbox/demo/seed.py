"""Demo organisations, users, datasets and grants for ``python -m sandbox init --demo``.

Idempotent: objects are found by name and created only when missing. The demo users' tokens are
kept across runs when the caller still has them (``sandbox.demo.tokens``: the tokens file).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.schema import DatasetMeta
from core.values import JobKind, OrgKind, Role
from policies.model import Aggregate, ColumnUse, Policy
from sandbox.app import get_datasets_of, get_ledger_of
from sandbox.db import Database, get_db_of
from sandbox.demo import tax
from sandbox.demo import tokens as demo_tokens
from sandbox.models import Dataset, Grant, GrantDataset, Org, User
from sandbox.service import grants, identity
from sandbox.service.auth import Principal, principal_of
from sandbox.service.datasets import Datasets
from sandbox.service.ledger import Ledger

DATA = Path(__file__).resolve().parent / "data"

ORGS = [
    ("City Data Bureau 市数据局", OrgKind.BUREAU),
    ("Example Bank 示例银行", OrgKind.ENTERPRISE),
    ("City Audit Office 市审计局", OrgKind.AUDIT),
]
# Two auditors: a script job's outputs need two independent reviewers (the README's script tour).
USERS = [("steward", 0, Role.STEWARD), ("analyst", 1, Role.ANALYST), ("auditor", 2, Role.AUDITOR), ("auditor2", 2, Role.AUDITOR)]

PUMS_META: dict[str, Any] = {
    "name": "pums",
    "title": "Census PUMS sample (1,000 persons)",
    "description": "US Census Public Use Microdata sample: age, sex, education, race, income, marital status.",
    "level": "重要",
    "privacy_unit": "pid",
    "columns": {
        "age": {"role": "quasi_identifier", "type": "int", "bounds": [0, 100]},
        "sex": {"role": "quasi_identifier", "type": "int", "domain": [0, 1]},
        "educ": {"role": "quasi_identifier", "type": "int", "domain": list(range(1, 17))},
        "race": {"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3, 4, 5, 6]},
        "income": {"role": "sensitive", "type": "int", "bounds": [0, 500000]},
        "married": {"role": "attribute", "type": "int", "domain": [0, 1]},
        "pid": {"role": "identifier", "type": "int"},
    },
}

TEACHER_META: dict[str, Any] = {
    "name": "teacher_survey",
    "title": "Teacher wellbeing survey (7,000 teachers)",
    "description": "Survey of teachers' stress and wellbeing; `name` is a direct identifier.",
    "level": "一般",
    "privacy_unit": "teacher_id",
    "columns": {
        "teacher_id": {"role": "identifier", "type": "int"},
        "name": {"role": "identifier", "type": "string"},
        "sex": {"role": "quasi_identifier", "type": "int", "domain": [1, 2, 3]},
        "age": {"role": "quasi_identifier", "type": "int", "bounds": [18, 100]},
        "marital_status": {"role": "quasi_identifier", "type": "int", "domain": list(range(1, 9))},
        "has_children": {"role": "attribute", "type": "int", "domain": [1, 2]},
        "highest_education_level": {"role": "quasi_identifier", "type": "int", "domain": list(range(1, 7))},
        "source_of_stress": {"role": "sensitive", "type": "int", "domain": list(range(1, 10))},
        "smoker": {"role": "sensitive", "type": "int", "domain": [1, 2]},
        "optimism": {"role": "sensitive", "type": "int", "bounds": [0, 40]},
        "life_satisfaction": {"role": "sensitive", "type": "int", "bounds": [0, 40]},
        "self_esteem": {"role": "sensitive", "type": "int", "bounds": [0, 40]},
    },
}

PUMS_POLICY = Policy(
    columns={
        "pums": {
            "age": ColumnUse.DIMENSION,
            "sex": ColumnUse.DIMENSION,
            "educ": ColumnUse.DIMENSION,
            "race": ColumnUse.DIMENSION,
            "married": ColumnUse.DIMENSION,
            "income": ColumnUse.MEASURE,
        }
    },
    aggregates=frozenset({Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG}),
    job_kinds=frozenset({JobKind.QUERY, JobKind.STATS, JobKind.SCRIPT}),  # scripts: every output held for two auditors
)

# The synthetic enterprise tax records (``sandbox.demo.tax``): Chinese names end to end.
TAX_POLICY = Policy(
    columns={
        "企业纳税": {
            "行业": ColumnUse.DIMENSION,
            "地区": ColumnUse.DIMENSION,
            "纳税年度": ColumnUse.DIMENSION,
            "营业收入": ColumnUse.MEASURE,
            "纳税额": ColumnUse.MEASURE,
        }
    },
    aggregates=frozenset({Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG}),
    job_kinds=frozenset({JobKind.QUERY, JobKind.STATS}),
)


def load(app: Flask, actor: str, known: Mapping[str, str]) -> dict[str, str]:
    """Create what is missing; return a valid token for the admin and each demo user, by name.

    ``known`` are tokens the caller has (the tokens file, ``SANDBOX_ADMIN_TOKEN``): kept while valid.
    """
    db, ledger, datasets = get_db_of(app), get_ledger_of(app), get_datasets_of(app)
    with db.writing() as session:
        orgs = [_org(session, ledger, actor, name, kind) for name, kind in ORGS]
        users = {name: _user(session, ledger, actor, name, orgs[i], role) for name, i, role in USERS}
        admin = session.scalar(select(User).where(User.role == Role.ADMIN.value))
        assert admin is not None, "initialise() creates the admin first"
        tokens = demo_tokens.ensure(session, ledger, actor, {"admin": admin, **users}, known)
        steward, analyst = principal_of(users["steward"]), principal_of(users["analyst"])
    pums = _dataset(db, datasets, steward, PUMS_META, DATA / "pums.csv")
    _dataset(db, datasets, steward, TEACHER_META, DATA / "teacher_survey.csv")
    enterprise_tax = _dataset(db, datasets, steward, tax.META, tax.FILE)
    _grant(db, ledger, analyst, steward, pums, PUMS_POLICY, "Demo: income by education and race for a regional credit-risk study.")
    _grant(db, ledger, analyst, steward, enterprise_tax, TAX_POLICY, "Demo: 各区县分行业纳税情况 (tax paid by district and industry).")
    return tokens


def _org(session: Session, ledger: Ledger, actor: str, name: str, kind: OrgKind) -> Org:
    return session.scalar(select(Org).where(Org.name == name)) or identity.create_org(session, ledger, actor, name, kind)


def _user(session: Session, ledger: Ledger, actor: str, name: str, org: Org, role: Role) -> User:
    found = session.scalar(select(User).where(User.name == name, User.org_id == org.id))
    return found or identity.create_user(session, ledger, actor, name, org.id, role)[0]


def _dataset(db: Database, datasets: Datasets, steward: Principal, meta: dict[str, Any], path: Path) -> Dataset:
    with db.sessions() as session:
        found = session.scalar(select(Dataset).where(Dataset.name == meta["name"]))
    if found is not None:
        return found
    return datasets.create(steward, DatasetMeta.model_validate(meta), path.name, path.read_bytes())


def _grant(db: Database, ledger: Ledger, analyst: Principal, steward: Principal, dataset: Dataset, policy: Policy, scenario: str) -> None:
    """An approved grant of the analyst's organisation on ``dataset``, unless it has one (of any status) already."""
    with db.writing() as session:
        existing = select(Grant.id).join(GrantDataset, GrantDataset.grant_id == Grant.id)
        if session.scalar(existing.where(Grant.org_id == analyst.org_id, GrantDataset.dataset_id == dataset.id)) is not None:
            return
        kinds = sorted(kind.value for kind in policy.job_kinds)
        grant = grants.request_grant(session, ledger, analyst, [dataset.id], scenario, {"job_kinds": kinds})
        grants.approve(session, ledger, steward, grant.id, policy, datetime.now(UTC) + timedelta(days=365))
