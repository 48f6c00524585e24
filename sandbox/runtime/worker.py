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

from flask import Flask

from core.errors import SandboxError
from core.values import JobKind, JobStage, JobStatus
from jobs.engine import DuckDBEngine, Engine, QueryInterrupted
from policies.model import Policy
from sandbox.db import get_db_of
from sandbox.keys import KeyStore, get_keys_of
from sandbox.logs import log_unexpected
from sandbox.models import DatasetVersion, Grant, GrantPolicy, Job
from sandbox.runtime import outputs
from sandbox.runtime import pipeline as pipelines
from sandbox.runtime.custodian import get_custodian_of
from sandbox.runtime.queue import Claimed, Queue
from sandbox.service.datasets import Datasets
from sandbox.service.grants import active_policy
from sandbox.service.ledger import Ledger

log = logging.getLogger(__name__)


class Stop(Exception):
    """The job must stop: cancelled, timed out, or the lease was lost."""


class Worker:
    def __init__(self, app: Flask, engine: Engine | None = None, worker_id: str | None = None) -> None:
        self.app = app
        self.db = get_db_of(app)
        self.keys: KeyStore = get_keys_of(app)
        self.datasets: Datasets = app.extensions["sandbox.datasets"]
        self.ledger: Ledger = app.extensions["sandbox.ledger"]
        self.own_engine: DuckDBEngine | None = None
        if engine is None:  # one job after another: its own engine prepares each next job's database meanwhile
            self.own_engine = engine = DuckDBEngine(memory_mb=int(app.config["JOB_MEMORY_MB"]), prepare_next=True)
        self.engine: Engine = engine
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = float(app.config["WORKER_LEASE_SECONDS"])
        self.poll_seconds = float(app.config["WORKER_POLL_SECONDS"])
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
        interrupt, why = threading.Event(), []
        beat = threading.Thread(target=self._heartbeat, args=(claimed, interrupt, why), daemon=True)
        beat.start()
        try:
            outcome = self._pipeline(claimed, interrupt, why)
        except (Stop, QueryInterrupted):
            outcome = pipelines.Outcome(
                JobStatus.FAILED if why and why[0] == "timeout" else JobStatus.CANCELLED, _stop_reason(why), None, None, None
            )
        except SandboxError as exc:
            outcome = pipelines.Outcome(JobStatus.FAILED, exc.message, None, None, None)
        except Exception as exc:
            log_unexpected(log, f"job {claimed.job_id}", exc)
            outcome = pipelines.Outcome(
                JobStatus.FAILED, "the job failed inside the sandbox; the operator has the details", None, None, None
            )
        finally:
            interrupt.set()
        if why and why[0] == "lease":
            return  # another worker owns the job now; nothing of ours may land
        output = None
        if outcome.raw is not None and outcome.released is not None:
            output = outputs.seal(self.keys, claimed.job_id, outcome.raw, outcome.released)
        self.queue.finish(claimed, outcome.status, outcome.reason, outcome.verdict, output, outcome.cells, outcome.scored)

    def _heartbeat(self, claimed: Claimed, interrupt: threading.Event, why: list[str]) -> None:
        deadline = time.monotonic() + claimed.timeout_seconds
        while not interrupt.wait(self.lease_seconds / 3):
            ours, cancel = self.queue.heartbeat(claimed)
            reason = "lease" if not ours else "cancel" if cancel else "timeout" if time.monotonic() > deadline else None
            if reason:
                why.append(reason)
                interrupt.set()
                return

    def _pipeline(self, claimed: Claimed, interrupt: threading.Event, why: list[str]) -> pipelines.Outcome:
        job, policy, versions = self._load_job(claimed)
        he = pipelines.HEServices(self.ledger, self.keys, get_custodian_of(self.app), f"worker:{self.id}")
        run = pipelines.Run(
            job,
            policy,
            versions,
            self.db,
            self.engine,
            lambda stage, progress: self._stage(claimed, stage, progress, interrupt),
            interrupt,
            he,
        )
        return run.execute({name: self.datasets.read(versions[name]) for name in run.datasets})

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


def _stop_reason(why: list[str]) -> str:
    reason = why[0] if why else "cancel"
    return {"timeout": "the job exceeded its time limit", "cancel": "cancelled by the analyst", "lease": "lease lost"}[reason]
