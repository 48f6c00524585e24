"""The job worker: claims jobs from the queue and runs their pipeline stages.

parse/validate (again, on the pinned versions) -> load (decrypt into memory) -> execute (engine)
-> output control -> release decision -> one transaction that stores the sealed output and ends
the job. A heartbeat thread renews the lease, watches for cancellation and the time limit, and
interrupts the engine when either comes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from flask import Flask

from core.errors import SandboxError
from core.schema import DatasetSchema
from core.values import JobKind, JobStage, JobStatus
from jobs.engine import DuckDBEngine, Engine, QueryInterrupted
from jobs.query import OutputKind, QueryPlan
from policies.evidence import Output
from policies.model import Policy
from policies.output_control import CellStatus, Note, control
from sandbox import differencing, outputs, releases
from sandbox.datasets import Datasets
from sandbox.db import get_db_of
from sandbox.grants import active_policy
from sandbox.job_service import QuerySpec, plan_query
from sandbox.keys import KeyStore, get_keys_of
from sandbox.ledger import Ledger
from sandbox.models import DatasetVersion, Grant, GrantPolicy, Job
from sandbox.queue import Claimed, Queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    reason: str
    verdict: dict[str, Any] | None
    raw: pa.Table | None
    released: dict[str, Any] | None
    cells: list[differencing.Cell] = field(default_factory=list)


class Stop(Exception):
    """The job must stop: cancelled, timed out, or the lease was lost."""


class Worker:
    def __init__(self, app: Flask, engine: Engine | None = None, worker_id: str | None = None) -> None:
        self.app = app
        self.db = get_db_of(app)
        self.keys: KeyStore = get_keys_of(app)
        self.datasets: Datasets = app.extensions["sandbox.datasets"]
        self.ledger: Ledger = app.extensions["sandbox.ledger"]
        self.engine = engine or DuckDBEngine()
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = float(app.config["WORKER_LEASE_SECONDS"])
        self.poll_seconds = float(app.config["WORKER_POLL_SECONDS"])
        self.queue = Queue(self.db, self.ledger, self.id, self.lease_seconds)
        self.stopping = threading.Event()

    def run(self, once: bool = False) -> int:
        """Work until stopped (SIGTERM/SIGINT finish the current job first); with ``once``, until the queue is empty."""
        done = 0
        while not self.stopping.is_set():
            claimed = self.queue.claim()
            if claimed is None:
                if once:
                    return done
                self.stopping.wait(self.poll_seconds)
                continue
            self.process(claimed)
            done += 1
        return done

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())

    def process(self, claimed: Claimed) -> None:
        interrupt, why = threading.Event(), []
        beat = threading.Thread(target=self._heartbeat, args=(claimed, interrupt, why), daemon=True)
        beat.start()
        try:
            outcome = self._pipeline(claimed, interrupt, why)
        except (Stop, QueryInterrupted):
            outcome = Outcome(JobStatus.FAILED if why and why[0] == "timeout" else JobStatus.CANCELLED, _stop_reason(why), None, None, None)
        except SandboxError as exc:
            outcome = Outcome(JobStatus.FAILED, exc.message, None, None, None)
        except Exception:
            log.exception("job %s failed unexpectedly", claimed.job_id)
            outcome = Outcome(JobStatus.FAILED, "the job failed inside the sandbox; the operator has the details", None, None, None)
        finally:
            interrupt.set()
        if why and why[0] == "lease":
            return  # another worker owns the job now; nothing of ours may land
        output = None
        if outcome.raw is not None and outcome.released is not None:
            output = outputs.seal(self.keys, claimed.job_id, outcome.raw, outcome.released)
        self.queue.finish(claimed, outcome.status, outcome.reason, outcome.verdict, output, outcome.cells)

    def _heartbeat(self, claimed: Claimed, interrupt: threading.Event, why: list[str]) -> None:
        with self.db.sessions() as session:
            job = session.get(Job, claimed.job_id)
            deadline = time.monotonic() + (job.timeout_seconds if job else 0)
        while not interrupt.wait(self.lease_seconds / 3):
            ours, cancel = self.queue.heartbeat(claimed)
            reason = "lease" if not ours else "cancel" if cancel else "timeout" if time.monotonic() > deadline else None
            if reason:
                why.append(reason)
                interrupt.set()
                return

    def _pipeline(self, claimed: Claimed, interrupt: threading.Event, why: list[str]) -> Outcome:
        job, policy, versions = self._load_job(claimed)
        if JobKind(job.kind) is not JobKind.QUERY:
            return Outcome(JobStatus.FAILED, f"{job.kind} jobs are not available", None, None, None)
        schemas = {name: DatasetSchema.model_validate(v.schema) for name, v in versions.items()}
        unique = frozenset(name for name, v in versions.items() if v.unit_count == v.row_count)
        plan = plan_query(QuerySpec.model_validate(job.spec), policy, schemas, unique)
        tables = {name: self.datasets.read(version) for name, version in versions.items() if name in plan.datasets}
        self._stage(claimed, JobStage.EXECUTE, 0.3, interrupt)
        raw = self.engine.run(plan.executable_sql, tables, interrupt)
        self._stage(claimed, JobStage.OUTPUT_CONTROL, 0.8, interrupt)
        outputs_ = aggregate_outputs(plan)
        controlled = control(raw, outputs_, plan.unit_columns, policy.disclosure)
        aggregates = [o.name for o in outputs_]
        keys, units = row_keys(raw, plan.group_keys), row_units(raw, plan.unit_columns)
        candidates = [differencing.Cell(keys[i], units[i]) for i in releases.released_rows(controlled.notes, raw.num_rows, aggregates)]
        findings = releases.Differencing(self.db, self.engine).flags(job, plan, policy, schemas, tables, candidates)
        del tables
        extra = [
            Note(keys.index(f.key), column, CellStatus.REVIEW, "differencing", _differencing_reason(f, policy))
            for f in findings
            for column in aggregates
        ]
        self._stage(claimed, JobStage.RELEASE, 0.95, interrupt)
        release = releases.decide(controlled, extra, aggregates, policy, keys, units)
        return Outcome(
            release.status,
            release.reason,
            release.summary,
            raw,
            released_form(plan, release.table, release.notes, release.summary),
            release.cells,
        )

    def _stage(self, claimed: Claimed, stage: JobStage, progress: float, interrupt: threading.Event) -> None:
        if interrupt.is_set() or not self.queue.stage(claimed, stage, progress):
            raise Stop

    def _load_job(self, claimed: Claimed) -> tuple[Job, Policy, dict[str, DatasetVersion]]:
        """The job, the policy version it was checked under (its grant still active), its pinned versions."""
        with self.db.sessions() as session:
            job = session.get(Job, claimed.job_id)
            grant = session.get(Grant, job.grant_id) if job else None
            if job is None or grant is None:
                raise SandboxError("the job or its grant no longer exists")
            active_policy(grant, JobKind(job.kind))  # refuses a revoked or expired grant at run time too
            pinned = session.query(GrantPolicy).filter_by(grant_id=grant.id, version=job.policy_version).one()
            policy = Policy.model_validate(pinned.policy)
            versions = {name: session.get(DatasetVersion, ref["version_id"]) for name, ref in job.dataset_versions.items()}
            missing = [name for name, v in versions.items() if v is None]
            if missing:
                raise SandboxError(f"dataset versions are missing: {', '.join(missing)}")
            return job, policy, {k: v for k, v in versions.items() if v is not None}


def aggregate_outputs(plan: QueryPlan) -> list[Output]:
    return [Output(o.name, o.aggregate) for o in plan.outputs if o.kind is OutputKind.AGGREGATE and o.aggregate is not None]


def row_keys(table: pa.Table, group_keys: Sequence[str]) -> list[differencing.Key]:
    columns = [table.column(k).to_pylist() for k in group_keys]
    return [tuple(col[i] for col in columns) for i in range(table.num_rows)]


def row_units(table: pa.Table, unit_columns: Sequence[str]) -> list[int]:
    columns = [table.column(c).to_pylist() for c in unit_columns]
    return [min((int(col[i] or 0) for col in columns), default=0) for i in range(table.num_rows)]


def _differencing_reason(finding: differencing.Finding, policy: Policy) -> str:
    return (
        f"its population differs from a cell released earlier (job {finding.job_id[:8]}) by {finding.difference} "
        f"privacy units, fewer than {policy.disclosure.threshold}: subtracting the two would disclose them"
    )


def released_form(plan: QueryPlan, table: pa.Table, notes: Sequence[Note], summary: dict[str, Any]) -> dict[str, Any]:
    columns = [{"name": o.name, "kind": o.kind.value, "type": str(table.schema.field(o.name).type)} for o in plan.outputs]
    return {"columns": columns, "rows": outputs.rows_of(table), "notes": [n.as_dict() for n in notes], "summary": summary}


def _stop_reason(why: list[str]) -> str:
    reason = why[0] if why else "cancel"
    return {"timeout": "the job exceeded its time limit", "cancel": "cancelled by the analyst", "lease": "lease lost"}[reason]
