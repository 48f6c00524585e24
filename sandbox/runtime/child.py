"""A killable child process per run: the one pipeline (``Executor``) under memory, CPU and wall-clock limits.

``ChildExecutor.run`` takes what ``Executor.run`` takes, except that the tables are ``sources``
(``sandbox.runtime.sources``) the child loads itself. The child is forked from a ``multiprocessing``
forkserver with the heavy modules preloaded: never a fork of the multi-threaded caller (a fork
copies locks other threads hold), never a fresh interpreter per job (1-2 s of imports each). It
receives the pickled definition and sources over a pipe and holds no database connection and no
master key: what the run needs of the database, and every stage report, is a request over the
same pipe that the parent answers with the real ``Services`` and ``stage``.

Limits. The parent enforces the wall clock: at the deadline, or as soon as ``interrupt`` is set
(cancelled, lease lost) or ``stage`` refuses, it SIGKILLs the child's process group and waits
until the child is gone, so a caller that keeps a lease renewed while ``run`` lasts never lets a
second worker start on a job that is still computing. The child first sets RLIMIT_AS (its address
space; DuckDB, pyarrow's allocator and the thread stacks reserve about 2.5 GB of it before any
work, measured, so the limit is that plus the working memory), RLIMIT_CPU (a backstop should the
parent die) and DuckDB's ``memory_limit`` (JOB_MEMORY_MB, at most a quarter of RLIMIT_AS: DuckDB,
which never spills, then fails cleanly before the process limit is hit).

Failures become typed errors with fixed messages (``RunFailed``): the analyst never sees an
exception's message (library messages can quote data values); the operator log gets the type and
stack frames (``sandbox.logs``), the ledger the ``cause``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

import duckdb

from core.errors import SandboxError
from core.values import JobStage
from jobs.engine import DuckDBEngine, QueryInterrupted
from jobs.script import ScriptPlan
from sandbox.logs import frames_of, log_child_failure
from sandbox.runtime.definition import JobDefinition, Outcome
from sandbox.runtime.executor import Executor, Services, Stage
from sandbox.runtime.sources import TableSource
from sandbox.scripts.isolation import LAUNCHER_GRACE_SECONDS

log = logging.getLogger(__name__)

TIMEOUT_REASON = "the job exceeded its time limit"
MEMORY_REASON = "the job exceeded its memory limit"
FAILED_REASON = "the job failed inside the sandbox; the operator has the details"
DRY_RUN_FAILED_REASON = (
    "the dry run failed in the engine (for example, a value that could not be converted); its message is withheld because it may quote data"
)

# Imported once by the forkserver, so that each child starts with them loaded (forking costs ms).
PRELOAD = [
    "pyarrow",
    "pyarrow.parquet",
    "duckdb",
    "pandas",
    "scipy.optimize",
    "statsmodels.api",
    "statsmodels.formula.api",  # imported where a model is fitted (jobs.stats.models), so not by the child module itself
    "opendp.prelude",
    "sandbox.runtime.child",  # and with it the executor, jobs.* and policies.*
]
SERVICE_CALLS = frozenset({"public_key", "decrypt", "eligibility"})
POLL_SECONDS = 0.05  # how often the parent looks at ``interrupt`` while the child is quiet
CPU_GRACE_SECONDS = 5  # between RLIMIT_CPU's SIGXCPU and its SIGKILL
KILL_WAIT_SECONDS = 10
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# A job's child runs at this niceness: analysis work yields the CPU to the API's answers and to the
# worker's lease heartbeat (both stay at the service's own priority), and takes what they leave.
JOB_NICENESS = 10


class RunFailed(SandboxError):
    """A run the sandbox stopped or lost; ``cause`` says why for the operator and the ledger (a type or signal, never a message)."""

    code = "job_failed"
    status = 422

    def __init__(self, message: str, cause: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.cause), {"details": self.details})


class TimedOut(RunFailed):
    """The run passed its time limit (wall clock, or the CPU-time backstop) and was killed. 422: the job, not the request, was too slow."""

    code = "timeout"


class OutOfMemory(RunFailed):
    """The run passed its memory limit (RLIMIT_AS, DuckDB's limit, or the kernel's OOM killer)."""

    code = "memory_limit"


def job_niceness() -> int:
    """The niceness of job children started from this process: its own, lowered by ``JOB_NICENESS``."""
    return min(os.getpriority(os.PRIO_PROCESS, 0) + JOB_NICENESS, 19)


@dataclass(frozen=True)
class ChildLimits:
    """What the child sets on itself before it reads anything."""

    memory_bytes: int  # RLIMIT_AS
    cpu_seconds: int  # RLIMIT_CPU (soft; the hard limit is CPU_GRACE_SECONDS later)
    engine_mb: int | None = None  # JOB_MEMORY_MB: DuckDB's working memory, at most a quarter of RLIMIT_AS
    niceness: int = field(default_factory=job_niceness)  # the caller's, lowered by JOB_NICENESS

    @property
    def duckdb_mb(self) -> int:
        quarter = max(self.memory_bytes // 4 // 2**20, 64)
        return min(self.engine_mb, quarter) if self.engine_mb else quarter


@functools.cache
def forkserver() -> ForkServerContext:
    """The process-wide forkserver context, its server started now at the job children's priority.

    The server imports PRELOAD as it starts -- seconds of CPU at every worker or web process start --
    so it yields the CPU like the job children it forks (which inherit its niceness). A server that
    died is started again by the next child's start, at our priority; each child lowers its own.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)  # CPython's own record of the server it started
    if pid is not None:
        with contextlib.suppress(OSError):  # it exited already: the first child's start says why
            os.setpriority(os.PRIO_PROCESS, pid, job_niceness())
    return context


PREFLIGHT_SECONDS = 120  # the forkserver's first start imports PRELOAD: seconds on a busy machine


class ChildUnavailable(RuntimeError):
    """Job children cannot be started here (said once, at start, instead of failing every job)."""


def preflight(seconds: float = PREFLIGHT_SECONDS) -> float:
    """Start the forkserver and one empty child now; the seconds it took, or ``ChildUnavailable`` saying why not.

    A worker (or a web process, for dry runs) calls this when it starts: the forkserver's first start
    imports the heavy modules, which a first job would otherwise wait for, and a forkserver that cannot
    start -- typically because this user cannot execute ``sys.executable`` again, as with a venv whose
    interpreter links into another user's home -- is found before any job is claimed.
    """
    started = time.monotonic()
    process = forkserver().Process(target=_nothing, name="job-preflight", daemon=True)
    try:
        process.start()
    except (OSError, EOFError) as exc:  # the forkserver never listened, or closed on us (it died: SIGTERM to our group)
        raise ChildUnavailable(
            f"cannot start job child processes ({type(exc).__name__}): {sys.executable} must be executable by this user "
            f"(uid {os.getuid()}) and able to start itself again"
        ) from None
    process.join(seconds)
    if process.exitcode != 0:
        _kill(process)
        raise ChildUnavailable(f"an empty job child process did not end cleanly within {seconds} s (exit {process.exitcode})")
    return time.monotonic() - started


def _nothing() -> None:
    """The preflight child's work."""


class ChildExecutor:
    """Runs each definition in a new child process; ``memory_bytes`` applies where the definition's limits name none."""

    def __init__(self, memory_bytes: int, interrupt: threading.Event | None = None, engine_mb: int | None = None) -> None:
        self.memory_bytes, self.interrupt, self.engine_mb = memory_bytes, interrupt, engine_mb

    def run(self, definition: JobDefinition, sources: Mapping[str, TableSource], services: Services, stage: Stage) -> Outcome:
        """The outcome of ``definition``; raises ``RunFailed`` (timed out, out of memory, crashed), ``QueryInterrupted``
        (``interrupt`` was set), what ``stage`` raises, and the ``SandboxError`` the run raised."""
        timeout = definition.limits.timeout_seconds
        if isinstance(definition.plan, ScriptPlan):  # the script's own wall clock kills it first; its launcher's set-up on top
            timeout += LAUNCHER_GRACE_SECONDS
        limits = ChildLimits(definition.limits.memory_bytes or self.memory_bytes, timeout * (os.cpu_count() or 1) + 1, self.engine_mb)
        context = forkserver()
        ours, theirs = context.Pipe()
        process = context.Process(target=child_main, args=(theirs, limits, os.getpid()), name=f"job-{definition.job_id[:8]}", daemon=True)
        process.start()
        theirs.close()
        deadline = time.monotonic() + timeout
        log.info("job %s runs in child process %s", definition.job_id, process.pid)
        try:
            ours.send((definition, dict(sources)))
            failed = DRY_RUN_FAILED_REASON if definition.mock else FAILED_REASON
            return _Parent(process, ours, services, stage, failed).serve(deadline, timeout, self.interrupt)
        except (ConnectionError, EOFError):  # the child died mid-conversation (reset, broken pipe or end of file)
            raise _death(_reap(process)) from None
        finally:
            _kill(process)
            ours.close()


class _Parent:
    """The parent's side of one run: answers the child's requests until it sends its outcome, dies, or must be stopped."""

    def __init__(self, process: BaseProcess, conn: Connection, services: Services, stage: Stage, failed: str) -> None:
        self.process, self.conn, self.services, self.stage, self.failed = process, conn, services, stage, failed

    def serve(self, deadline: float, timeout: int, interrupt: threading.Event | None) -> Outcome:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut(TIMEOUT_REASON, "timeout", details={"timeout_seconds": timeout})
            if interrupt is not None and interrupt.is_set():
                raise QueryInterrupted("the job was stopped")
            if self.conn in wait([self.conn, self.process.sentinel], min(left, POLL_SECONDS)):
                outcome = self._answer(self.conn.recv())
                if outcome is not None:
                    return outcome
            elif self.process.exitcode is not None or not self.process.is_alive():
                raise _death(_reap(self.process))

    def _answer(self, message: tuple[Any, ...]) -> Outcome | None:
        kind = message[0]
        if kind == "done":
            outcome: Outcome = message[1]
            return outcome
        if kind == "raise":
            raise message[1]
        if kind in ("memory", "crash"):
            _, type_name, frames = message
            log_child_failure(log, f"job in child process {self.process.pid}", type_name, frames)
            if kind == "memory":
                raise OutOfMemory(MEMORY_REASON, f"memory: {type_name}")
            raise RunFailed(self.failed, f"error: {type_name}")
        if kind == "stage":
            self.stage(message[1], message[2])  # raises when the job must stop; ``run`` then kills the child
            self.conn.send(("ok", None))
            return None
        if kind == "call" and message[1] in SERVICE_CALLS:
            try:
                self.conn.send(("ok", getattr(self.services, message[1])(*message[2])))
            except SandboxError as exc:  # the run decides what a refusal means (e.g. the custodian's)
                self.conn.send(("raise", exc))
            return None
        raise RunFailed(FAILED_REASON, f"protocol: {kind}")


def _reap(process: BaseProcess) -> int | None:
    process.join(KILL_WAIT_SECONDS)
    return process.exitcode


def _death(exitcode: int | None) -> RunFailed:
    """What a child's death without an answer means: SIGKILL not sent by us is the kernel's OOM killer, SIGXCPU the CPU limit."""
    if exitcode == -signal.SIGKILL:
        return OutOfMemory(MEMORY_REASON, "killed: SIGKILL")
    if exitcode == -signal.SIGXCPU:
        return TimedOut(TIMEOUT_REASON, "cpu_limit: SIGXCPU")
    how = f"signal {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 else f"exit {exitcode}"
    log.error("job child process died without an answer (%s)", how)
    return RunFailed(FAILED_REASON, f"died: {how}")


def _kill(process: BaseProcess) -> None:
    """SIGKILL the child's process group (it leads one) and wait until it is gone."""
    if process.exitcode is None and process.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # not yet its own group leader, or already gone
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
    process.join(KILL_WAIT_SECONDS)
    if process.exitcode is None:
        log.error("job child process %s did not die within %s s of SIGKILL", process.pid, KILL_WAIT_SECONDS)


def child_main(conn: Connection, limits: ChildLimits, caller: int) -> None:
    """The child: limits first, then load the tables, run the pipeline, send one final message."""
    _die_with(caller)
    os.setpgid(0, 0)
    # Only the parent ends a run (SIGKILL at its deadline): a SIGTERM or SIGINT sent to every process of
    # the service (a service manager stopping it) must not kill the job the worker is finishing.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpriority(os.PRIO_PROCESS, 0, max(limits.niceness, os.getpriority(os.PRIO_PROCESS, 0)))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + CPU_GRACE_SECONDS))  # the last step
    reply: tuple[Any, ...]
    try:
        definition, sources = conn.recv()
        engine = DuckDBEngine(memory_mb=limits.duckdb_mb)
        engine.prepare()  # its database is made while the tables load
        tables = {name: source.load() for name, source in sources.items()}
        executor = Executor(engine)
        reply = ("done", executor.run(definition, tables, _RemoteServices(conn), functools.partial(_remote_stage, conn)))
    except SandboxError as exc:
        reply = ("raise", exc)
    except (MemoryError, duckdb.OutOfMemoryException) as exc:
        reply = ("memory", type(exc).__name__, frames_of(exc))
    except Exception as exc:
        reply = ("crash", type(exc).__name__, frames_of(exc))
    try:
        conn.send(reply)
    except ConnectionError:
        return  # the parent is gone (a killed worker): nobody to answer, and this process dies with it
    except Exception as exc:  # e.g. an answer too large for the memory left: say so without it
        with contextlib.suppress(ConnectionError):
            conn.send(("memory" if isinstance(exc, MemoryError) else "crash", type(exc).__name__, frames_of(exc)))


def _die_with(caller: int) -> None:
    """SIGKILL this child as soon as ``caller`` (the worker, or the web process of a dry run) is gone.

    A worker killed with SIGKILL cannot kill its job's child: the child would compute on, orphaned,
    until its CPU limit (the job's timeout times the CPUs), while the job's lease expires and a second
    worker runs it again. The child's parent is the forkserver, which exits when no process holds
    its "alive" pipe any more: the caller, and each child, which inherits a copy to start processes
    of its own (ours never do). So the child closes its copy, then asks the kernel for SIGKILL when its
    parent exits (PR_SET_PDEATHSIG); a caller that died before that is seen by the check that follows.
    """
    if sys.platform != "linux":
        return
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        os.close(alive)
        setattr(server, "_forkserver_alive_fd", None)  # noqa: B010 (a private attribute of multiprocessing)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %s): a killed worker's job child outlives it", ctypes.get_errno())
    try:
        os.kill(caller, 0)
    except ProcessLookupError:
        os._exit(1)


def _ask(conn: Connection, message: tuple[Any, ...]) -> Any:
    conn.send(message)
    kind, value = conn.recv()
    if kind == "raise":
        raise value
    return value


def _remote_stage(conn: Connection, stage: JobStage, progress: float) -> None:
    _ask(conn, ("stage", stage, progress))


class _RemoteServices:
    """The child's ``Services``: each call is answered by the parent's real services."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def public_key(self, *args: Any) -> Any:
        return _ask(self.conn, ("call", "public_key", args))

    def decrypt(self, *args: Any) -> Any:
        return _ask(self.conn, ("call", "decrypt", args))

    def eligibility(self, *args: Any) -> Any:
        return _ask(self.conn, ("call", "eligibility", args))
