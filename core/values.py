"""Typed values shared across packages: roles, kinds, column roles and levels, as Enums.

Every status in the sandbox is an Enum; a string coming from outside is parsed into one at the
edge and an unknown value is an error, never a silent default.
"""

from __future__ import annotations

from enum import StrEnum


class OrgKind(StrEnum):
    BUREAU = "bureau"
    ENTERPRISE = "enterprise"
    AUDIT = "audit"
    OPERATOR = "operator"  # the domain's own operator; created by `init`, never through the API


class Role(StrEnum):
    ADMIN = "admin"
    STEWARD = "steward"
    ANALYST = "analyst"
    AUDITOR = "auditor"


# Which organisation kinds a role may belong to. A steward speaks for a data bureau, an analyst for
# an enterprise; auditors sit in an audit office or in the bureau's supervision unit.
ROLE_ORG_KINDS: dict[Role, frozenset[OrgKind]] = {
    Role.ADMIN: frozenset({OrgKind.OPERATOR}),
    Role.STEWARD: frozenset({OrgKind.BUREAU}),
    Role.ANALYST: frozenset({OrgKind.ENTERPRISE}),
    Role.AUDITOR: frozenset({OrgKind.AUDIT, OrgKind.BUREAU}),
}


class ColumnRole(StrEnum):
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    ATTRIBUTE = "attribute"


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"
    DATE = "date"
    PAILLIER = "paillier"  # a number encrypted by its provider under the domain's Paillier key (``ColumnSpec.paillier``)

    @property
    def numeric(self) -> bool:
        return self in (ColumnType.INT, ColumnType.FLOAT)


class Level(StrEnum):
    """Classification level after GB/T 43697-2024: general, important, core data."""

    GENERAL = "一般"
    IMPORTANT = "重要"
    CORE = "核心"

    @classmethod
    def parse(cls, text: str) -> Level:
        aliases = {"general": cls.GENERAL, "important": cls.IMPORTANT, "core": cls.CORE}
        try:
            return cls(text)
        except ValueError:
            level = aliases.get(text.strip().lower())
            if level is None:
                raise
            return level


class JobKind(StrEnum):
    QUERY = "query"
    STATS = "stats"
    SCRIPT = "script"
    HE = "he"


class GrantStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"  # derived: approved, but past its expiry


class JobStatus(StrEnum):
    """The life of a job (docs/job-lifecycle.md). Terminal statuses never change again."""

    QUEUED = "queued"
    RUNNING = "running"
    CHECKING = "checking"
    RELEASED = "released"
    HELD = "held"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset({JobStatus.RELEASED, JobStatus.BLOCKED, JobStatus.REJECTED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobStage(StrEnum):
    """Pipeline stages, in order: each is its own module (parse and validate happen at submit)."""

    QUEUED = "queued"
    LOAD = "load"
    EXECUTE = "execute"
    OUTPUT_CONTROL = "output_control"
    RELEASE = "release"
    DONE = "done"


class Encoding(StrEnum):
    """The text encodings a CSV upload may state (``meta.encoding``); without one, ingest detects UTF-8 or GB18030."""

    UTF8 = "utf-8"
    GBK = "gbk"
    GB18030 = "gb18030"
