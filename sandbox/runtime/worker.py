"""The job worker: claims jobs from the queue and runs their pipeline stages.

parse/validate (again, on the pinned versions) -> load (decrypt into memory) -> execute (engine)
-> output control -> release decision -> one transaction that stores the sealed output and ends
the job. A heartbeat thread renews the lease, watches for cancellation and the time limit, and
interrupts the engine when either comes.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid

from core.errors import SandboxError
from core.schema import DatasetSchema
from core.values import JobKind, JobStage, JobStatus
from jobs.engine import DuckDBEngine, Engine, QueryInterrupted
from policies.model import Policy
from sandbox.instance import Instance
from sandbox.logs import log_unexpected
from sandbox.models import DatasetVersion, Grant, GrantPolicy, Job
from sandbox.runtime import outputs
from sandbox.runtime.definition import DatasetRef, JobDefinition, Limits, Outcome, datasets_of
from sandbox.runtime.executor import Executor
from sandbox.runtime.queue import Claimed, Queue
from sandbox.runtime.services import DatabaseServices
from sandbox.service.budget import job_epsilon
from sandbox.service.grants import active_policy
from sandbox.service.jobs import plan_job

log = logging.getLogger(__name__)


class Stop(Exception):
    """The job must stop: cancelled, timed out, or the lease was lost."""


class Worker:
    """Claims jobs and runs each through the ``Executor``; built from the instance's services, not from a web app."""

    def __init__(self, instance: Instance, engine: Engine | None = None, worker_id: str | None = None) -> None:
        self.instance = instance
        self.db, self.keys, self.datasets, self.ledger = instance.db, instance.keys, instance.datasets, instance.ledger
        self.own_engine: DuckDBEngine | None = None
        if engine is None:  # one job after another: its own engine prepares each next job's database meanwhile
            self.own_engine = engine = DuckDBEngine(memory_mb=instance.job_memory_mb, prepare_next=True)
        self.engine: Engine = engine
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds, self.poll_seconds = instance.lease_seconds, instance.poll_seconds
        self.queue = Queue(self.db, self.ledger, self.id, self.lease_seconds)
        self.stopping = threading.Event()

    def run(self, once: bool = False) -> int:
        """Work until stopped (SIGTERM/SIGINT finish the current job first); with ``once``, until the queue is empty."""
        done = 0
        try:
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
        finally:
            if self.own_engine is not None:
                self.own_engine.close()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())

    def process(self, claimed: Claimed) -> None:
        interrupt, why = threading.Event(), list[str]()
        beat = threading.Thread(target=self._heartbeat, args=(claimed, interrupt, why), daemon=True)
        beat.start()
        try:
            outcome = self._execute(claimed, interrupt)
        except (Stop, QueryInterrupted):
            outcome = Outcome.ended(JobStatus.FAILED if why and why[0] == "timeout" else JobStatus.CANCELLED, _stop_reason(why))
        except SandboxError as exc:
            outcome = Outcome.ended(JobStatus.FAILED, exc.message)
        except Exception as exc:
            log_unexpected(log, f"job {claimed.job_id}", exc)
            outcome = Outcome.ended(JobStatus.FAILED, "the job failed inside the sandbox; the operator has the details")
        finally:
            interrupt.set()
        if why and why[0] == "lease":
            return  # another worker owns the job now; nothing of ours may land
        output = None
        if outcome.raw is not None and outcome.released is not None:
            output = outputs.seal(self.keys, claimed.job_id, outcome.raw, outcome.released)
        self.queue.finish(claimed, outcome, output)

    def _heartbeat(self, claimed: Claimed, interrupt: threading.Event, why: list[str]) -> None:
        deadline = time.monotonic() + claimed.timeout_seconds
        while not interrupt.wait(self.lease_seconds / 3):
            ours, cancel = self.queue.heartbeat(claimed)
            reason = "lease" if not ours else "cancel" if cancel else "timeout" if time.monotonic() > deadline else None
            if reason:
                why.append(reason)
                interrupt.set()
                return

    def _execute(self, claimed: Claimed, interrupt: threading.Event) -> Outcome:
        definition, grant_id, versions = self._load_job(claimed)
        tables = {name: self.datasets.read(versions[name]) for name in datasets_of(definition.plan)}
        services = DatabaseServices(self.instance, definition, grant_id, f"worker:{self.id}")
        return Executor(self.engine, interrupt).run(definition, tables, services, functools.partial(self._stage, claimed, interrupt))

    def _stage(self, claimed: Claimed, interrupt: threading.Event, stage: JobStage, progress: float) -> None:
        if interrupt.is_set() or not self.queue.stage(claimed, stage, progress):
            raise Stop

    def _load_job(self, claimed: Claimed) -> tuple[JobDefinition, str, dict[str, DatasetVersion]]:
        """The job's definition under the policy version it was checked with (its grant still active), its grant, its pinned versions."""
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
            found = {k: v for k, v in versions.items() if v is not None}
            return definition_of(job, policy, found, claimed.timeout_seconds), grant.id, found


def definition_of(job: Job, policy: Policy, versions: dict[str, DatasetVersion], timeout_seconds: int) -> JobDefinition:
    """A stored job as a definition: its spec planned again on its pinned versions under its pinned policy."""
    refs = tuple(
        DatasetRef(name, v.id, DatasetSchema.model_validate(v.schema), v.unit_count == v.row_count) for name, v in versions.items()
    )
    schemas = {ref.name: ref.schema for ref in refs}
    unique = frozenset(ref.name for ref in refs if ref.unique_units)
    kind = JobKind(job.kind)
    plan = plan_job(kind, job.spec, policy, schemas, unique)
    return JobDefinition(
        job.id, job.org_id, kind, dict(job.spec), job.spec_sha256, plan, refs, policy, Limits(timeout_seconds), job_epsilon(job.spec)
    )


def _stop_reason(why: list[str]) -> str:
    reason = why[0] if why else "cancel"
    return {"timeout": "the job exceeded its time limit", "cancel": "cancelled by the analyst", "lease": "lease lost"}[reason]
