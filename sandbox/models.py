"""SQLAlchemy models of the metadata database. The schema itself is created by Alembic migrations.

Identifiers are random UUIDs, so that ids reveal neither how many objects exist nor their order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Signing in to the web console (``sandbox.service.people``): a unique login name, set when the
    # admin issues a password link, and the password's argon2id hash (None: no password yet).
    login: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Every console session carries the generation it was made under; "sign out everywhere" and a new
    # password increase it, so that every older session cookie stops working at once.
    session_generation: Mapped[int] = mapped_column(Integer, default=0)

    org: Mapped[Org] = relationship(lazy="joined")


class PasswordLink(Base):
    """A one-time link to set a password, stored only as its token's SHA-256; it expires and is used once."""

    __tablename__ = "password_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class SigninFailures(Base):
    """Failed console sign-ins per login name, known or not: the lockout looks the same for a name that
    does not exist, so that it never tells whether an account exists."""

    __tablename__ = "signin_failures"

    login_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the normalised login
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """A bearer token, stored only as its SHA-256: a stolen database yields no usable token."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    level: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # The dataset's global epsilon cap over all grants on it, an exact decimal string; None: no global cap.
    epsilon_cap: Mapped[str | None] = mapped_column(String(64), nullable=True)

    versions: Mapped[list[DatasetVersion]] = relationship(back_populates="dataset", order_by="DatasetVersion.number", lazy="selectin")

    @property
    def current(self) -> DatasetVersion:
        return self.versions[-1]


class DatasetVersion(Base):
    """One immutable upload of a dataset: its schema and where its ciphertext lives."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    row_count: Mapped[int] = mapped_column(BigInteger)
    unit_count: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(300))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))

    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    bureau_org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    scenario: Mapped[str] = mapped_column(Text)
    requested: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    datasets: Mapped[list[GrantDataset]] = relationship(lazy="selectin", order_by="GrantDataset.position")
    policies: Mapped[list[GrantPolicy]] = relationship(lazy="selectin", order_by="GrantPolicy.version")


class GrantDataset(Base):
    __tablename__ = "grant_datasets"

    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)

    dataset: Mapped[Dataset] = relationship(lazy="joined")


class GrantPolicy(Base):
    """A version of a grant's policy; jobs record which version they ran under."""

    __tablename__ = "grant_policies"
    __table_args__ = (UniqueConstraint("grant_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))


class LedgerEvent(Base):
    """One audit event. ``details`` is stored as canonical JSON text so that its hash is stable."""

    __tablename__ = "ledger_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(80))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class LedgerHead(Base):
    """A single row naming the last event; appenders lock it, so sequence numbers never race."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class LedgerCheckpoint(Base):
    __tablename__ = "ledger_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_fingerprint: Mapped[str] = mapped_column(String(32))


class DomainKey(Base):
    """The domain's own asymmetric keys (the ledger signing key), private halves wrapped by the master key."""

    __tablename__ = "domain_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(40), unique=True)
    public_der: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """An analyst's computation under one grant, and its place in the queue.

    ``lease_owner``/``lease_expires_at`` say which worker holds it; a lease that is not renewed by
    heartbeats expires, and another worker may claim the job again (``attempts`` counts claims).
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    submitted_by: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_sha256: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    dataset_versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    stage: Mapped[str] = mapped_column(String(30))
    progress: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    released_cells: Mapped[int | None] = mapped_column(Integer, nullable=True)  # cells its output gives out (jobs.released.cell_count)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobOutput(Base):
    """A job's raw and released output, each sealed under the output's own data key."""

    __tablename__ = "job_outputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    released: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Review(Base):
    """An auditor's decision on a held output, with the reason the analyst will see."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    reviewer: Mapped[str] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    outputs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # a script's outputs this release covers (None: all)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CellPopulation(Base):
    """The privacy units behind a released or held job's cell rows on one dataset version, for the release audit.

    ``population`` seals the job's rows on the version together: a roaring bitmap per row of the
    units' indices in the dataset version (``jobs.population``; framing in
    ``sandbox.runtime.release_audit``), under the job's own data key, which the master key wraps
    (``wrapped_key``) bound to the job: a copy of the database reveals neither which units nor whose
    (a record's length tells only the total size of its bitmaps). A record written before revision
    0008 holds one row, ``row_index``; a record since holds all of them and ``row_index`` is NULL.
    ``released`` is false while the job is held: a held job's rows are audited again when an auditor
    releases it, and only released rows count as earlier releases. Released records are numbered per
    version (``seq``, in the order they were stored under the version's lock): a process's cached
    history names the last one it holds.
    """

    __tablename__ = "cell_populations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    dataset_version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    row_index: Mapped[int | None] = mapped_column(Integer)
    released: Mapped[bool] = mapped_column(Boolean)
    seq: Mapped[int | None] = mapped_column(Integer)
    population: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_cell_populations_version_released", "dataset_version_id", "released"),
        Index("ix_cell_populations_version_seq", "dataset_version_id", "seq", unique=True),
    )


class AuditFinding(Base):
    """Why the release audit withheld or flagged a row: for auditors (``GET /reviews``), never the analyst."""

    __tablename__ = "audit_findings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    row_index: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(20))
    earlier_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BudgetSpend(Base):
    """The privacy loss one released job spent, recorded in the transaction that released it.

    Amounts are exact decimal strings (``Fraction`` reads them back exactly); ``job_id`` is unique,
    so that a job retried or released twice is charged once.
    """

    __tablename__ = "budget_spends"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    epsilon: Mapped[str] = mapped_column(String(64))
    delta: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HEKey(Base):
    """A Paillier public key the domain accepts for provider-encrypted columns: the key custodian's.

    Only the public key is here; the private key lives with the custodian (``python -m sandbox
    custodian``), never in this database nor on a worker.
    """

    __tablename__ = "he_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[str] = mapped_column(Text)  # decimal
    bits: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(500))  # where it was registered from (custodian URL or file)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consent(Base):
    """An entity's consent to be scored under a grant, until ``valid_until``, as registered by the steward."""

    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"), index=True)
    entity: Mapped[str] = mapped_column(String(200))
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    registered_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    __table_args__ = (Index("ix_consents_grant_entity", "grant_id", "entity"),)


class ScoreUse(Base):
    """One entity scored by one job: what the policy's jobs-per-entity-per-period limit counts."""

    __tablename__ = "score_uses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id"))
    entity: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_score_uses_grant_entity_created", "grant_id", "entity", "created_at"),
        UniqueConstraint("job_id", "entity", name="uq_score_uses_job_entity"),
    )
