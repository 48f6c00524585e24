"""Request and response bodies of the API, as pydantic models (the OpenAPI document uses them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.schema import ColumnSpec
from core.values import GrantStatus, JobKind, JobStatus, OrgKind, Role
from policies.model import Policy

Name = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: str
    version: str


class OrgIn(Strict):
    name: Name
    kind: Annotated[Literal[OrgKind.BUREAU, OrgKind.ENTERPRISE, OrgKind.AUDIT], Field(description="bureau, enterprise or audit")]


class OrgOut(BaseModel):
    id: str
    name: str
    kind: OrgKind
    created_at: datetime


class OrgList(BaseModel):
    items: list[OrgOut]


class UserIn(Strict):
    name: Name
    org_id: Id
    role: Role


class UserOut(BaseModel):
    id: str
    name: str
    org_id: str
    role: Role
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]


class TokenOut(BaseModel):
    id: str
    user_id: str
    token: Annotated[str, Field(description="shown once; only its hash is stored")]


class TokenInfo(BaseModel):
    """A token as listed: never the token, nor any part of it."""

    id: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None


class TokenList(BaseModel):
    items: list[TokenInfo]


class PasswordLinkIn(Strict):
    login: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$",
            description="the name the person signs in to the console with: lower-case letters, digits, '.', '_', '-'",
        ),
    ]


class PasswordLinkOut(BaseModel):
    user_id: str
    login: str
    url: Annotated[str, Field(description="the one-time link to the console's set-password page; shown once, only its hash is stored")]
    expires_at: datetime


class UserCreated(UserOut):
    token: Annotated[str, Field(description="shown once; only its hash is stored")]
    token_id: str


class Me(BaseModel):
    id: str
    name: str
    role: Role
    org_id: str
    org_kind: OrgKind
    org_name: str


class VersionOut(BaseModel):
    id: str
    number: int
    row_count: int
    unit_count: int
    stored_bytes: int | None = Field(default=None, description="the encrypted file's size; for the owning bureau and auditors only")
    columns: dict[str, ColumnSpec]
    privacy_unit: str
    created_at: datetime


class DatasetOut(BaseModel):
    id: str
    name: str
    title: str
    description: str
    level: str
    org_id: str
    privacy_unit: str
    columns: dict[str, ColumnSpec]
    row_count: int
    unit_count: int
    current_version: int
    versions: list[VersionOut]
    created_at: datetime


class DatasetList(BaseModel):
    items: list[DatasetOut]


class MockQuery(Strict):
    rows: Annotated[int, Field(ge=1, le=1_000)] = 20
    seed: Annotated[int | None, Field(ge=0, le=2**31)] = None


class MockOut(BaseModel):
    dataset: str
    version: int
    synthetic: bool
    note: str
    columns: list[str]
    rows: list[dict[str, Any]]


class Requested(Strict):
    job_kinds: Annotated[list[JobKind], Field(min_length=1, max_length=4)]
    columns: dict[str, list[str]] | None = None


class GrantIn(Strict):
    dataset_ids: Annotated[list[Id], Field(min_length=1, max_length=20)]
    scenario: Annotated[str, Field(min_length=10, max_length=5_000, description="the stated purpose")]
    requested: Requested


class ApproveIn(Strict):
    policy: Policy
    expires_at: Annotated[datetime, Field(description="ISO 8601; without an offset it is read as UTC")]


class ReasonIn(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=5_000)]


class GrantOut(BaseModel):
    id: str
    org_id: str
    bureau_org_id: str
    requested_by: str
    dataset_ids: list[str]
    datasets: list[str]
    scenario: str
    requested: Requested
    status: GrantStatus
    reason: str | None
    policy: Policy | None
    policy_version: int | None
    expires_at: datetime | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class GrantList(BaseModel):
    items: list[GrantOut]


class EventsQuery(Strict):
    after: Annotated[int, Field(ge=0, le=2**62)] = 0
    limit: Annotated[int, Field(ge=1, le=1_000)] = 100
    action: Annotated[str | None, Field(max_length=64, description="only events of this action, e.g. review.release")] = None
    object_id: Annotated[str | None, Field(max_length=64, description="only events about this object (a job's or dataset's id)")] = None
    since: Annotated[datetime | None, Field(description="only events at or after this moment (ISO 8601; no offset: UTC)")] = None
    until: Annotated[datetime | None, Field(description="only events before this moment (ISO 8601; no offset: UTC)")] = None


class EventOut(BaseModel):
    seq: int
    ts: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class EventList(BaseModel):
    items: list[EventOut]
    next_after: int | None


class CheckpointOut(BaseModel):
    seq: int
    head_hash: str
    signed_at: str
    signature: Annotated[str, Field(description="Ed25519 over the checkpoint message, base64")]
    key_fingerprint: str


class LedgerExport(BaseModel):
    """A segment of the ledger for offline verification (``python -m sandbox audit verify-export``)."""

    format: Literal["sandbox-ledger-segment-v1"] = "sandbox-ledger-segment-v1"
    exported_at: datetime
    first: int
    last: int
    events: list[EventOut]
    checkpoints: list[CheckpointOut]
    public_key_pem: str | None
    public_key_fingerprint: str | None


class VerifyOut(BaseModel):
    ok: bool
    length: int
    head: str
    first_bad_seq: int | None
    problem: str | None
    checkpoints: int
    public_key_fingerprint: str | None


class JobIn(Strict):
    grant_id: Id
    kind: JobKind
    spec: dict[str, Any]


class DryRunIn(JobIn):
    rows: Annotated[int, Field(ge=1, le=10_000, description="mock rows per dataset")] = 1_000
    seed: Annotated[int | None, Field(ge=0, le=2**31)] = None


class JobCreated(BaseModel):
    id: str
    status: str


class JobOut(BaseModel):
    id: str
    grant_id: str
    kind: JobKind
    spec: dict[str, Any]
    spec_sha256: str
    status: str
    stage: str
    progress: float
    attempts: int
    reason: str | None
    verdict: dict[str, Any] | None
    policy_version: int
    dataset_versions: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None
    run_seconds: float | None


class JobsQuery(Strict):
    status: JobStatus | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    before: Annotated[datetime | None, Field(description="created_at of the last job seen: the next page")] = None


class JobList(BaseModel):
    items: list[JobOut]
    next_before: datetime | None = None


class ResultColumn(BaseModel):
    name: str
    kind: str
    type: str


class _Table(BaseModel):
    """A released table: each row's keys in the order of ``columns`` (the query's order), not sorted."""

    columns: list[ResultColumn]
    rows: list[dict[str, Any]]

    @model_validator(mode="after")
    def _rows_in_column_order(self) -> _Table:
        names = [c.name for c in self.columns]
        self.rows = [{name: row[name] for name in names if name in row} | row for row in self.rows]
        return self


class ResultOut(_Table):
    job_id: str
    notes: list[dict[str, Any]]
    summary: dict[str, Any]
    decision: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = Field(default=None, description="a script job's released outputs, by name")
    returned: list[str] | None = Field(default=None, description="a script job's outputs the reviewers returned (see decision.reason)")


class DryRunOut(_Table):
    synthetic: bool
    note: str
    notes: list[dict[str, Any]]
    summary: dict[str, Any]
    outputs: dict[str, Any] | None = Field(default=None, description="a script job's outputs, by name")
    run: dict[str, Any] | None = Field(default=None, description="a script's exit status, stdout, stderr, timings and problems")


class ReviewIn(Strict):
    decision: Literal["release", "reject"]
    reason: Annotated[str, Field(min_length=3, max_length=5_000)]
    outputs: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63)]] | None,
        Field(
            min_length=1,
            max_length=20,
            description="a script job's release only: the outputs this reviewer releases (default: all); the others are returned",
        ),
    ] = None


class ReviewDecision(BaseModel):
    """A decision made so far on a held output; what was decided is null while a script job's review is blinded."""

    reviewer: str
    reviewer_name: str
    decided_at: datetime
    decision: Literal["release", "reject"] | None
    reason: str | None
    outputs: list[str] | None


class ReviewItem(BaseModel):
    job: JobOut
    raw: dict[str, Any]
    proposed: dict[str, Any]
    findings: list[dict[str, Any]]  # the release audit's: row, rule, earlier_job_id, detail (auditors only)
    reviewers_required: Annotated[int, Field(description="how many different auditors must release it (the two-person rule)")]
    blinded: Annotated[bool, Field(description="a script job's review: no decision shows until every required reviewer has decided")]
    decisions: list[ReviewDecision]


class ReviewList(BaseModel):
    items: list[ReviewItem]


class EpsilonCapIn(Strict):
    epsilon_cap: Annotated[float, Field(gt=0, allow_inf_nan=False, description="the dataset's epsilon over all its grants")]


class EpsilonCapOut(BaseModel):
    dataset_id: str
    epsilon_cap: float | None
    epsilon_spent: float


class BudgetOut(BaseModel):
    """A DP grant's privacy budget; every field null when the grant's policy has no dp."""

    epsilon_total: float | None = None
    epsilon_spent: float | None = None
    epsilon_remaining: float | None = None
    delta_total: float | None = None
    delta_spent: float | None = None
    delta_remaining: float | None = None
    dataset_caps: list[EpsilonCapOut] | None = None


class HEKeyOut(BaseModel):
    """A Paillier public key the domain accepts: providers encrypt under it (``n``), schemas name it (``fingerprint``)."""

    fingerprint: str
    n: Annotated[str, Field(description="the modulus, decimal")]
    bits: int
    created_at: datetime


class HEKeyList(BaseModel):
    items: list[HEKeyOut]
