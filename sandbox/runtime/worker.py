"""The job worker: claims jobs from the queue and runs each in a killable child process.

parse/validate (again, on the pinned versions) -> load (the child decrypts into its memory) ->
execute (engine) -> output control -> release decision -> one transaction that stores the sealed
output and ends the job. A heartbeat thread renews the lease for as long as the run lasts (until its
child is confirmed dead, past the job's time limit if need be: no second worker ever claims a job
that is still computing) and watches for cancellation. The time and memory limits are the child
executor's (``sandbox.runtime.child``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Mapping

import pyarrow as pa

from core.errors import SandboxError
from core.schema import DatasetSchema
from core.values import JobKind, JobStage, JobStatus
from jobs.engine import Engine, QueryInterrupted
from jobs.script import ScriptPlan
from policies.model import Policy
from sandbox.instance import Instance
from sandbox.logs import log_unexpected
from sandbox.models import DatasetVersion, Grant, GrantPolicy, Job
from sandbox.runtime import outputs, script_run
from sandbox.runtime.child import TIMEOUT_REASON, ChildExecutor, RunFailed, TimedOut
from sandbox.runtime.definition import DatasetRef, JobDefinition, Limits, Outcome, datasets_of
from sandbox.runtime.executor import Executor, Services, Stage
from sandbox.runtime.queue import Claimed, Queue
from sandbox.runtime.services import DatabaseServices
from sandbox.runtime.sources import SealedTable
from sandbox.service.budget import job_epsilon
from sandbox.service.grants import active_policy
from sandbox.service.jobs import plan_job

log = logging.getLogger(__name__)


class Stop(Exception):
    """The job must stop: cancelled, timed out, or the lease was lost."""


class Worker:
    """Claims jobs and runs each in a child process (``ChildExecutor``); built from the instance's services, not from a web app.

    An ``engine`` handed in (tests' fake engines, which cannot cross to a child) runs the pipeline in
    this process instead, where only the time limit applies, by interrupting the engine.
    """

    def __init__(self, instance: Instance, engine: Engine | None = None, worker_id: str | None = None) -> None:
        self.instance = instance
        self.db, self.keys, self.datasets, self.ledger = instance.db, instance.keys, instance.datasets, instance.ledger
        self.engine = engine
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds, self.poll_seconds = instance.lease_seconds, instance.poll_seconds
        self.queue = Queue(self.db, self.ledger, self.id, self.lease_seconds, self.keys)
        self.stopping = threading.Event()

    def run(self, once: bool = False) -> int:
        """Work until stopped; with ``once``, until the queue is empty.

        SIGTERM/SIGINT stop the claiming: the current job runs on up to its time limit (its child is
        killed there), is finished, and then ``run`` returns.
        """
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
        interrupt, over, why = threading.Event(), threading.Event(), list[str]()
        beat = threading.Thread(target=self._heartbeat, args=(claimed, interrupt, over, why), daemon=True)
        beat.start()
        loaded: list[JobDefinition] = []
        try:
            outcome = self._execute(claimed, interrupt, loaded)
        except (Stop, QueryInterrupted):
            outcome = Outcome.ended(JobStatus.CANCELLED, _stop_reason(why))
        except RunFailed as exc:  # timed out, out of memory, crashed: its child is dead (``ChildExecutor.run`` reaped it)
            outcome = Outcome.ended(JobStatus.FAILED, exc.message, exc.cause)
        except SandboxError as exc:
            outcome = Outcome.ended(JobStatus.FAILED, exc.message)
        except Exception as exc:
            log_unexpected(log, f"job {claimed.job_id}", exc)
            outcome = Outcome.ended(JobStatus.FAILED, "the job failed inside the sandbox; the operator has the details", type(exc).__name__)
        finally:
            over.set()
        beat.join()
        if outcome.status is JobStatus.FAILED and loaded and isinstance(loaded[0].plan, ScriptPlan) and not loaded[0].mock:
            # Whether a script's run fails is the script's choice: it ends held, like every real script run.
            outcome = script_run.held_anyway(f"the run failed: {outcome.cause or outcome.reason}")
        if why and why[0] == "lease":
            return  # another worker owns the job now; nothing of ours may land
        output = None
        if outcome.raw is not None and outcome.released is not None:
            output = outputs.seal(self.keys, claimed.job_id, outcome.raw, outcome.released)
        self.queue.finish(claimed, outcome, output)

    def _heartbeat(self, claimed: Claimed, interrupt: threading.Event, over: threading.Event, why: list[str]) -> None:
        """Renew the lease until the run is ``over``; a cancel or a lost lease sets ``interrupt`` (the executor then stops the run)."""
        while not over.wait(self.lease_seconds / 3):
            ours, cancel = self.queue.heartbeat(claimed)
            if not ours or (cancel and not why):
                why.append("lease" if not ours else "cancel")
                interrupt.set()
            if not ours:
                return

    def _execute(self, claimed: Claimed, interrupt: threading.Event, loaded: list[JobDefinition]) -> Outcome:
        definition, grant_id, versions = self._load_job(claimed)
        loaded.append(definition)
        services = DatabaseServices(self.instance, definition, grant_id, f"worker:{self.id}")
        stage = functools.partial(self._stage, claimed, interrupt)
        names = datasets_of(definition.plan)
        if self.engine is not None:
            tables = {name: self.datasets.read(versions[name]) for name in names}
            return _in_process(Executor(self.engine, interrupt), interrupt, definition, tables, services, stage)
        sources = {name: self._sealed(versions[name]) for name in names}
        return ChildExecutor(self.instance.job_memory_bytes, interrupt, self.instance.job_memory_mb).run(
            definition, sources, services, stage
        )

    def _sealed(self, version: DatasetVersion) -> SealedTable:
        return SealedTable(str(self.instance.store.root), version.path, self.datasets.data_key(version), version.id)

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
    kind = JobKind(job.kind)
    # One row per unit lets plans count rows instead of distinct units. A query that releases exact
    # cells then lists its rows' positions, which are their units' indices, for the release audit
    # (``jobs.population``); a table statistic's plan passes units through its own CTEs, so it
    # still names its units and counts them distinctly.
    counted = kind is JobKind.STATS and policy.dp is None
    unique = frozenset() if counted else frozenset(ref.name for ref in refs if ref.unique_units)
    plan = plan_job(kind, job.spec, policy, schemas, unique)
    return JobDefinition(
        job.id, job.org_id, kind, dict(job.spec), job.spec_sha256, plan, refs, policy, Limits(timeout_seconds), job_epsilon(job.spec)
    )


def _in_process(
    executor: Executor,
    interrupt: threading.Event,
    definition: JobDefinition,
    tables: Mapping[str, pa.Table],
    services: Services,
    stage: Stage,
) -> Outcome:
    """Run here, for an engine handed in: at the time limit ``interrupt`` stops the engine and the run fails as timed out."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        interrupt.set()

    timer = threading.Timer(definition.limits.timeout_seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        return executor.run(definition, tables, services, stage)
    except (Stop, QueryInterrupted):
        if expired.is_set():
            raise TimedOut(TIMEOUT_REASON, "timeout") from None
        raise
    finally:
        timer.cancel()


def _stop_reason(why: list[str]) -> str:
    return "lease lost" if why and why[0] == "lease" else "cancelled by the analyst"
