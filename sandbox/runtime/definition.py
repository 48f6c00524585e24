"""The typed boundary between the worker and the work: a ``JobDefinition`` in, an ``Outcome`` out.

Both are frozen and picklable, so that the executor can run in a killable child process: the
definition carries everything the work needs that does not change while it runs (the validated
plan, the pinned policy and dataset versions, the limits), and the outcome everything the queue
stores when it ends the job. What the work needs of the database while it runs goes through the
``Services`` the executor is handed (``sandbox.runtime.executor``), never through these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from core.schema import DatasetSchema
from core.values import JobKind, JobStatus
from jobs.he import HEPlan
from jobs.query import QueryPlan
from jobs.released import Released
from jobs.script import ScriptPlan
from jobs.stats import StatsPlan
from jobs.stats.dp import DPStats
from policies.budget import Epsilon
from policies.model import Policy
from policies.rules import CellStatus

Plan = QueryPlan | StatsPlan | DPStats | HEPlan | ScriptPlan  # DPStats: a stats job on a DP grant


@dataclass(frozen=True)
class DatasetRef:
    """A dataset version pinned at submission: its name in the job, its id, its schema."""

    name: str
    version_id: str
    schema: DatasetSchema
    unique_units: bool  # one row per privacy unit: cheaper SQL, and a query's population run lists row positions (``jobs.population``)


@dataclass(frozen=True)
class Limits:
    """What one run of the job may take: wall-clock seconds from the start of its child process, and its
    address space (RLIMIT_AS; DuckDB gets a quarter). ``sandbox.runtime.child`` enforces both."""

    timeout_seconds: int
    memory_bytes: int | None = None  # None: the executor's default (JOB_MEMORY_BYTES)


@dataclass(frozen=True)
class JobDefinition:
    """Everything a run of a job needs that does not change while it runs.

    ``mock`` marks a dry run on synthetic rows: DP answers say so in their summary, he aggregates
    count only (mock rows have no real ciphertexts), and score jobs refuse (no consents to check).
    """

    job_id: str
    org_id: str
    kind: JobKind
    spec: Mapping[str, Any]  # as submitted
    spec_sha256: str
    plan: Plan
    datasets: tuple[DatasetRef, ...]
    policy: Policy
    limits: Limits
    epsilon: Epsilon | None  # the ε a DP job states (checked at submission); None for other jobs
    mock: bool = False

    def __post_init__(self) -> None:
        if self.epsilon is None and is_dp(self.plan):
            raise ValueError("a DP job's definition states its epsilon")

    def dataset(self, name: str) -> DatasetRef:
        return next(ref for ref in self.datasets if ref.name == name)

    @property
    def schemas(self) -> dict[str, DatasetSchema]:
        return {ref.name: ref.schema for ref in self.datasets}


def is_dp(plan: Plan) -> bool:
    return isinstance(plan, DPStats) or (isinstance(plan, QueryPlan) and plan.dp is not None)


def datasets_of(plan: Plan) -> tuple[str, ...]:
    """The datasets a plan reads (their decrypted tables are handed to the executor)."""
    return plan.datasets if isinstance(plan, QueryPlan | HEPlan | ScriptPlan) else (plan.dataset,)


@dataclass(frozen=True)
class Verdict:
    """Output control's summary of a job's answer: its worst status, why, and the kind's own counts.

    ``details`` holds what each kind reports beyond status and reason (rows, suppressed and flagged
    cells, the DP noise, the he decryption, a model's fit). ``as_json`` is the one place a verdict
    becomes the JSON stored with the job, put on the ledger and shown by the API.
    """

    status: CellStatus
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> Verdict:
        """The verdict of an answer's summary (``{"status": ..., "reason": ..., ...}``)."""
        details = {k: v for k, v in summary.items() if k not in {"status", "reason"}}
        return cls(CellStatus(summary["status"]), str(summary.get("reason", "")), details)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, **self.details}


@dataclass(frozen=True)
class Populations:
    """The privacy units behind the rows of one dataset version that the job would release, for the release audit.

    ``bitmaps`` maps a row of the released form to its population: a serialized roaring ``BitMap``
    of the units' indices in the version (``jobs.population``). Never shown to anyone; stored sealed
    when the job is released or held (``sandbox.runtime.release_audit``).
    """

    version_id: str
    bitmaps: Mapping[int, bytes]


@dataclass(frozen=True)
class Outcome:
    """How a run ended and what it produced, for the queue to store in one transaction.

    ``released`` is the form the analyst receives if the job is released (None when nothing may be
    shown, e.g. a refused model); ``raw`` the table auditors see; ``populations`` the units behind the
    rows to release, per dataset version, which the queue audits against everything released from
    those versions before anything leaves (``sandbox.runtime.audited``); ``scored`` the entities a score job scored, whose uses
    are recorded when it is released; ``cause`` what auditors see of a failure's origin. A released DP
    answer's spend follows from the job's ε and its verdict (whether it selected keys): ``budget.charge``
    reads both, for the queue and for reviews alike.
    """

    status: JobStatus
    reason: str
    verdict: Verdict | None = None
    raw: pa.Table | None = None
    released: Released | None = None
    populations: tuple[Populations, ...] = ()
    scored: tuple[str, ...] = ()
    cause: str = ""  # for the ledger: why a run failed beyond its fixed reason (a type or signal, never a message)

    @classmethod
    def ended(cls, status: JobStatus, reason: str, cause: str = "") -> Outcome:
        """A run that stopped before producing anything (failed, cancelled)."""
        return cls(status, reason, cause=cause)
