"""Soak: mixed jobs through the REST API on PostgreSQL while job workers are SIGKILLed and restarted.

Bounded and loopback only. A fresh database on the PostgreSQL test cluster (``scripts/postgres-test.sh``,
or ``--database-url``; dropped at the end) and a fresh instance in a temporary folder; gunicorn on
127.0.0.1 and N worker processes (``python -m sandbox worker``, lease ``LEASE_SECONDS``). Over the API:
the steward uploads PUMS (the 1,000-person sample, ``tests/datafiles.py``) and ``pums_big`` (PUMS
resampled, seeded, with a household column ``hh`` of 10 values as a join key); the analyst gets three
grants (output control on PUMS for query and stats; DP on PUMS; queries on ``pums_big``).

The load, seeded: ``--jobs`` jobs from a shuffled mix of queries and statistics under output control,
DP queries and histograms (ε of 0.01-0.05, the grant's total about 80% of what they ask together, so
that late ones are refused at submission or at release), and self-joins of ``pums_big`` on ``hh``
(10^9-10^10 joined rows) with ``timeout_seconds`` of 2, which must be killed at their limit; between
them heavy dry runs (a crosstab past the cell cap, ``too_expensive``; a crosstab with margins on 10,000
mock rows, whose suppression LP is slow). ``2 x workers`` submitters each submit a job and follow it
to its end (closed loop); ``--pollers`` threads poll random jobs' status all along; a killer SIGKILLs
a random worker that holds a job's lease (the worker alone, as a crash: the lease expires and another
worker claims the job) ``--kills`` times, spread evenly over the jobs' ends, and starts a new one a moment later.

Checked at every run (exit status 1 if any fails): every accepted job ended in a final status (0
lost) and has exactly one terminal ledger event of that status; no job released twice (ledger
events, sealed outputs); DP: one spend per charged DP job (released, or ended otherwise after
reading the data), none for others, the spends' sum equals the sum of their ε exactly (fractions of
the stored decimals) and the grant's budget view says the same, releases never above the total;
every response below 500, no connection error; every timed-out job failed with the timeout reason,
every other job ended released or held unless its budget ran out or its attempts did; no job child
of a killed worker still running at the end; the ledger's hash chain verifies (``python -m sandbox
audit verify``). Printed: throughput (final jobs per second), p50/p99 submit-to-release latency of
released jobs (the database's ``created_at`` to ``finished_at``), and the API's p50/p99 under the
pollers. Target (full size only): the API's p99 <= ``API_P99_TARGET`` s.

    .venv/bin/python benchmarks/soak.py             # 4 workers, 500 jobs, 50 pollers
    .venv/bin/python benchmarks/soak.py --smoke     # 2 workers, 40 jobs, 20 pollers
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.checks import Checks, add_smoke_flag  # noqa: E402
from sandbox import bootstrap as setup  # noqa: E402
from sandbox import create_app  # noqa: E402
from sandbox.db import get_db_of  # noqa: E402
from sandbox.demo.seed import PUMS_META  # noqa: E402
from sandbox.models import BudgetSpend, Job, JobOutput, LedgerEvent  # noqa: E402
from tests.datafiles import data_file  # noqa: E402
from tests.processes import start, stop  # noqa: E402

FINAL = frozenset({"released", "held", "blocked", "rejected", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset(f"job.{status}" for status in FINAL)
TIMEOUT_REASON = "the job exceeded its time limit"
EXHAUSTED = "privacy budget exhausted"
ATTEMPTS = "no worker finished the job in"
MIN_AGE = 10.0  # seconds: a worker younger than this is not killed (it is still importing)
LEASE_SECONDS = 3.0  # a killed worker's job is claimed again after at most this
TIMEOUT_SECONDS = 2  # the time limit of the jobs meant to time out
BIG_ROWS, HOUSEHOLDS = 200_000, 10
API_P99_TARGET = 1.0  # seconds, full size
CLIENT_TIMEOUT = 300  # seconds: no answer by then counts as a failure (a dry run on a busy machine first waits for its forkserver)
MIX = {"query": 30, "stats": 25, "dp": 25, "timeout": 10, "dry_run": 10}  # weights; dry runs come on top of --jobs

SDC_POLICY: dict[str, Any] = {
    "columns": {"pums": {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "married": "dimension"}
                | {"income": "measure"}},
    "aggregates": ["count", "sum", "avg", "median"],
    "job_kinds": ["query", "stats"],
}  # fmt: skip
HEAVY_POLICY: dict[str, Any] = {
    "columns": {"pums_big": {"hh": "join_key", "educ": "dimension", "race": "dimension", "income": "measure"}},
    "aggregates": ["count", "sum", "avg"],
    "job_kinds": ["query"],
}
QUERIES = [
    "SELECT race, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY race",
    "SELECT educ, COUNT(*) AS n, SUM(income) AS total_income FROM pums GROUP BY educ",
    "SELECT sex, married, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY sex, married",
]
STATS = [
    {"op": "crosstab", "dataset": "pums", "index": ["sex"], "columns": ["race"], "values": "income", "aggfunc": ["count", "mean"],
     "margins": True},
    {"op": "describe", "dataset": "pums", "columns": ["income"], "statistics": ["count", "mean"]},
    {"op": "histogram", "dataset": "pums", "column": "age", "bins": 10},
]  # fmt: skip
DP_QUERIES = ["SELECT race, COUNT(*) AS n FROM pums GROUP BY race", "SELECT sex, AVG(income) AS mean_income FROM pums GROUP BY sex"]
DP_STATS = [{"op": "histogram", "dataset": "pums", "column": "age", "bins": 10}]
EPSILONS = (0.01, 0.02, 0.05)
HEAVY_SQL = "SELECT a.educ, COUNT(*) AS n FROM pums_big a JOIN pums_big b ON a.hh = b.hh GROUP BY a.educ"
DRY_RUNS = [
    ("stats", {"op": "crosstab", "dataset": "pums", "index": ["age", "educ"], "columns": ["race", "sex", "married"], "margins": True,
               "values": "income", "aggfunc": ["sum", "count"]}, 3000),
    ("stats", {"op": "crosstab", "dataset": "pums", "index": ["age", "educ"], "columns": ["sex"], "margins": True,
               "values": "income", "aggfunc": ["sum", "count"]}, 10_000),
]  # fmt: skip


@dataclass(frozen=True)
class Size:
    workers: int
    jobs: int
    pollers: int
    kills: int  # SIGKILLs, spread evenly over the jobs' ends


FULL, SMOKE = Size(4, 500, 50, 25), Size(2, 40, 20, 4)


# --- HTTP, with every response's status and time recorded --------------------------------------


@dataclass
class Api:
    """Requests to the served instance; each thread has its own session; every response is recorded."""

    base: str
    calls: list[tuple[str, int, float]] = field(default_factory=list)  # (what, status or 0 for no answer, seconds)
    errors: Counter[str] = field(default_factory=Counter)  # requests without an answer, by exception
    # GETs sent again once after the server closed the kept-alive connection they went out on (below)
    resent: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)

    def call(self, what: str, method: str, path: str, token: str, **kwargs: Any) -> requests.Response | None:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        started = time.perf_counter()
        response: requests.Response | None = None
        for attempt in (1, 2):
            try:
                response = session.request(
                    method, self.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=CLIENT_TIMEOUT, **kwargs
                )
                break
            except requests.ConnectionError as exc:
                # HTTP/1.1's keep-alive race: gunicorn closes a connection idle past its keep-alive time just
                # as the client sends on it ("Connection reset by peer"). A GET (idempotent) is sent once more,
                # as browsers and HTTP clients do (RFC 9112, 9.3.1); the resend is counted and printed, and a
                # second failure, or any failure of another method, counts as a request without an answer.
                if attempt == 1 and method == "GET" and "aborted" in str(exc):
                    with self.lock:
                        self.resent[what] += 1
                    continue
                with self.lock:
                    self.errors[f"{what}: {type(exc).__name__}: {str(exc)[-80:]}"] += 1
                break
            except requests.RequestException as exc:
                with self.lock:
                    self.errors[f"{what}: {type(exc).__name__}: {str(exc)[-80:]}"] += 1
                break
        with self.lock:
            self.calls.append((what, 0 if response is None else response.status_code, time.perf_counter() - started))
        return response

    def ok(self, method: str, path: str, token: str, expected: int = 200, **kwargs: Any) -> Any:
        """A setup call that must answer ``expected``; its JSON."""
        response = self.call("setup", method, path, token, **kwargs)
        if response is None or response.status_code != expected:
            raise SystemExit(f"{method} {path}: {None if response is None else (response.status_code, response.text[:500])}")
        return response.json()


# --- the instance: database, folder, gunicorn, workers -----------------------------------------


def cluster_url(given: str | None) -> str:
    url = given or os.environ.get("SANDBOX_TEST_DATABASE_URL") or ""
    if not url:
        script = ["/bin/bash", str(ROOT / "scripts/postgres-test.sh")]
        url = subprocess.run(script, capture_output=True, text=True, check=False).stdout.strip()
    if not url.startswith("postgresql"):
        raise SystemExit("soak: needs PostgreSQL: scripts/postgres-test.sh found no server (or pass --database-url)")
    return url


@contextmanager
def fresh_database(cluster: str) -> Iterator[str]:
    """A new, empty database on the cluster for this run; dropped (connections and all) at the end."""
    name = f"sandbox_soak_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(cluster, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(cluster).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instance_env(folder: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SANDBOX_INSTANCE_PATH": str(folder / "instance"),
        "SANDBOX_DATABASE_URL": database_url,
        "SANDBOX_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "SANDBOX_WORKER_POLL_SECONDS": "0.05",
    }


def initialise(env: dict[str, str]) -> str:
    """Create the instance (master key, schema, admin) in this process; the admin's token."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        app = create_app()
        token = setup.initialise(app).admin_token
        get_db_of(app).engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert token is not None
    return token


def serve(env: dict[str, str], folder: Path, port: int) -> subprocess.Popen[bytes]:
    """gunicorn with threads: 2 processes x 8 threads (below the database pool's 15 connections each)."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
               "--threads", "8", "--timeout", "60", "wsgi:app"]  # fmt: skip
    server = start(command, env=env, log=folder / "gunicorn.log", cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.1)
    stop(server)
    raise SystemExit("gunicorn did not answer within 60 s; see " + str(folder / "gunicorn.log"))


class Fleet:
    """The worker processes: started, SIGKILLed at random (the worker alone, as a crash), restarted.

    A kill picks a random worker among those holding a job's lease (busy, so that the kill lands mid-job), and
    never one younger than ``MIN_AGE`` seconds (still importing: killing it would test nothing but slow the run).
    """

    def __init__(self, env: dict[str, str], folder: Path, size: int, rng: random.Random) -> None:
        self.env, self.folder, self.rng = env, folder, rng
        self.engine = create_engine(env["SANDBOX_DATABASE_URL"], pool_size=1, max_overflow=0)
        self.workers = [self._start() for _ in range(size)]
        self.killed: list[int] = []  # pids of killed workers (each led its own session)
        self.busy_kills = 0
        self.stopping = threading.Event()

    def _start(self) -> tuple[subprocess.Popen[bytes], float]:
        command = [sys.executable, "-m", "sandbox", "worker"]
        return start(command, env=self.env, log=self.folder / "workers.log", cwd=ROOT), time.monotonic()

    def killer(self, finished: Callable[[], int], marks: list[int]) -> None:
        """At each mark (a number of finished jobs, plus a random 0-2 s): SIGKILL one worker, start another 0.2-1 s later."""
        for mark in marks:
            while finished() < mark:
                if self.stopping.wait(0.1):
                    return
            if self.stopping.wait(self.rng.uniform(0, 2)):
                return
            index = self._victim()
            if index is None:
                continue
            victim, _ = self.workers[index]
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            self.killed.append(victim.pid)
            self.stopping.wait(self.rng.uniform(0.2, 1.0))
            self.workers[index] = self._start()  # the fleet is whole again, also when it is being stopped

    def _victim(self) -> int | None:
        """A random busy worker old enough to kill, waiting up to 5 s for one; else any old enough; else None."""
        deadline = time.monotonic() + 5
        while not self.stopping.is_set():
            old = [i for i, (_, born) in enumerate(self.workers) if time.monotonic() - born >= MIN_AGE]
            busy = [i for i in old if self.workers[i][0].pid in self._leaseholders()]
            if busy:
                self.busy_kills += 1
                return self.rng.choice(busy)
            if time.monotonic() > deadline:
                return self.rng.choice(old) if old else None
            time.sleep(0.1)
        return None

    def _leaseholders(self) -> set[int]:
        """The pids of the workers that hold a lease (a worker's id is ``host-pid-random``)."""
        with self.engine.connect() as conn:
            owners = conn.scalars(select(Job.lease_owner).where(Job.lease_owner.is_not(None))).all()
        return {int(owner.rsplit("-", 2)[1]) for owner in owners if owner}

    def left_behind(self) -> list[int]:
        """Live processes of the killed workers' sessions: job children orphaned by a kill (each in its own group)."""
        killed = set(self.killed)
        return [pid for pid, sid in sessions().items() if sid in killed]

    def stop(self) -> list[int]:
        """SIGTERM every worker (each finishes its job first), then their exit statuses."""
        self.engine.dispose()
        return [stop(worker, grace=60) for worker, _ in self.workers]


def sessions() -> dict[int, int]:
    """pid -> session id of every live process (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                found[int(entry.name)] = int(fields[3])
    return found


# --- the world: organisations, users, data, grants ----------------------------------------------


@dataclass(frozen=True)
class World:
    analyst: str
    auditor: str
    steward: str
    grants: dict[str, str]  # sdc, dp, heavy
    epsilon_total: float


def big_parquet(rows: int) -> bytes:
    """PUMS resampled column by column (numpy seed 2024), pid unique, ``hh`` one of HOUSEHOLDS values."""
    source = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    rng = np.random.default_rng(2024)
    columns = {name: rng.choice(source[name].to_numpy().astype(np.int64), size=rows) for name in ("age", "sex", "educ", "race", "income")}
    columns |= {"married": rng.choice(source["married"].to_numpy().astype(np.int64), size=rows)}
    columns |= {"hh": rng.integers(0, HOUSEHOLDS, rows), "pid": np.arange(1, rows + 1, dtype=np.int64)}
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def make_world(api: Api, admin: str, dp_jobs: int) -> World:
    def org(name: str, kind: str) -> str:
        return str(api.ok("POST", "/api/v1/orgs", admin, 201, json={"name": name, "kind": kind})["id"])

    def user(org_id: str, role: str) -> str:
        return str(api.ok("POST", "/api/v1/users", admin, 201, json={"name": role, "org_id": org_id, "role": role})["token"])

    bureau, bank, audit = org("City Data Bureau", "bureau"), org("Example Bank", "enterprise"), org("Audit Office", "audit")
    steward, analyst, auditor = user(bureau, "steward"), user(bank, "analyst"), user(audit, "auditor")
    pums = upload(api, steward, PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv").read_bytes(), "pums.csv")
    households = {"hh": {"role": "attribute", "type": "int", "domain": list(range(HOUSEHOLDS))}}
    big_meta = {**PUMS_META, "name": "pums_big", "title": "PUMS resampled (seeded)", "columns": PUMS_META["columns"] | households}
    big = upload(api, steward, big_meta, big_parquet(BIG_ROWS), "pums_big.parquet")
    epsilon_total = round(0.8 * dp_jobs * statistics.mean(EPSILONS), 2) or 0.05
    dp = {"epsilon_total": epsilon_total, "epsilon_per_job": max(EPSILONS), "delta_total": 0.0, "max_rows_per_unit": 1}
    dp_policy = {**SDC_POLICY, "dp": dp}
    api.ok("POST", f"/api/v1/datasets/{pums}/epsilon-cap", steward, json={"epsilon_cap": epsilon_total})
    grants = {
        "sdc": grant(api, analyst, steward, pums, SDC_POLICY),
        "dp": grant(api, analyst, steward, pums, dp_policy),
        "heavy": grant(api, analyst, steward, big, HEAVY_POLICY),
    }
    return World(analyst, auditor, steward, grants, epsilon_total)


def upload(api: Api, steward: str, meta: dict[str, Any], data: bytes, filename: str) -> str:
    files = {"file": (filename, data)}
    return str(api.ok("POST", "/api/v1/datasets", steward, 201, data={"meta": json.dumps(meta)}, files=files)["id"])


def grant(api: Api, analyst: str, steward: str, dataset_id: str, policy: dict[str, Any]) -> str:
    body = {"dataset_ids": [dataset_id], "scenario": "Soak test of the job queue", "requested": {"job_kinds": policy["job_kinds"]}}
    grant_id = str(api.ok("POST", "/api/v1/grants", analyst, 201, json=body)["id"])
    api.ok("POST", f"/api/v1/grants/{grant_id}/approve", steward, json={"policy": policy, "expires_at": "2099-01-01T00:00:00Z"})
    return grant_id


# --- the load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    category: str  # a key of MIX
    body: dict[str, Any]

    @property
    def epsilon(self) -> float | None:
        value = self.body["spec"].get("epsilon")
        return None if value is None else float(value)


def tasks(world: World, jobs: int, rng: random.Random) -> list[Task]:
    """``jobs`` jobs and, on top, dry runs in the proportion of MIX, shuffled."""
    job_weights = {k: w for k, w in MIX.items() if k != "dry_run"}
    counts = {k: round(jobs * w / sum(job_weights.values())) for k, w in job_weights.items()}
    counts["query"] += jobs - sum(counts.values())
    counts["dry_run"] = max(1, round(jobs * MIX["dry_run"] / sum(job_weights.values())))
    made = [make_task(category, world, rng, i) for category, n in counts.items() for i in range(n)]
    rng.shuffle(made)
    return made


def make_task(category: str, world: World, rng: random.Random, i: int) -> Task:
    grants = world.grants
    if category == "query":
        return Task(category, {"grant_id": grants["sdc"], "kind": "query", "spec": {"sql": QUERIES[i % len(QUERIES)]}})
    if category == "stats":
        return Task(category, {"grant_id": grants["sdc"], "kind": "stats", "spec": STATS[i % len(STATS)]})
    if category == "dp":
        epsilon = rng.choice(EPSILONS)
        if i % 3 == 2:
            return Task(category, {"grant_id": grants["dp"], "kind": "stats", "spec": {**DP_STATS[0], "epsilon": epsilon}})
        return Task(category, {"grant_id": grants["dp"], "kind": "query", "spec": {"sql": DP_QUERIES[i % 2], "epsilon": epsilon}})
    if category == "timeout":
        spec = {"sql": HEAVY_SQL, "timeout_seconds": TIMEOUT_SECONDS}
        return Task(category, {"grant_id": grants["heavy"], "kind": "query", "spec": spec})
    kind, spec, rows = DRY_RUNS[i % len(DRY_RUNS)]
    return Task(category, {"grant_id": grants["sdc"], "kind": kind, "spec": spec, "rows": rows, "seed": i})


@dataclass
class Load:
    """Submitters (closed loop: submit, follow to the end, next), pollers, and what they saw."""

    api: Api
    world: World
    queue: list[Task]
    accepted: dict[str, Task] = field(default_factory=dict)  # job id -> its task
    refused: Counter[str] = field(default_factory=Counter)  # "status code" of submissions not accepted
    dry_runs: list[tuple[int, str, float]] = field(default_factory=list)  # (status, error code, seconds)
    unfollowed: list[str] = field(default_factory=list)  # jobs not final when their submitter gave up
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    follow_seconds: float = 900.0
    ended: int = 0  # submissions refused, or whose job their submitter saw end

    def finished(self) -> int:
        return self.ended

    def next_task(self) -> Task | None:
        with self.lock:
            return self.queue.pop() if self.queue else None

    def submitter(self) -> None:
        while (task := self.next_task()) is not None:
            if task.category == "dry_run":
                self._dry_run(task)
                continue
            response = self.api.call("submit", "POST", "/api/v1/jobs", self.world.analyst, json=task.body)
            if response is None or response.status_code != 202:
                self._refused(task, response)
                continue
            job_id = str(response.json()["id"])
            with self.lock:
                self.accepted[job_id] = task
            self._follow(job_id)

    def _refused(self, task: Task, response: requests.Response | None) -> None:
        error = {} if response is None or response.status_code >= 500 else response.json()["error"]
        status = 0 if response is None else response.status_code
        with self.lock:
            self.ended += 1  # the kills are paced by the submissions that ended, refused ones too
            self.refused[f"{task.category}: {status} {error.get('code', '')}".strip()] += 1
            if error.get("code") not in (None, "budget_exhausted"):
                print(f"  refused at submission ({task.category}): {status} {error}")

    def _dry_run(self, task: Task) -> None:
        started = time.perf_counter()
        response = self.api.call("dry_run", "POST", "/api/v1/jobs/dry-run", self.world.analyst, json=task.body)
        seconds = time.perf_counter() - started
        status = 0 if response is None else response.status_code
        code = response.json()["error"]["code"] if response is not None and 400 <= status < 500 else ""
        with self.lock:
            self.dry_runs.append((status, code, seconds))

    def _follow(self, job_id: str) -> None:
        deadline = time.monotonic() + self.follow_seconds
        while time.monotonic() < deadline:
            response = self.api.call("follow", "GET", f"/api/v1/jobs/{job_id}", self.world.analyst)
            if response is not None and response.status_code == 200 and response.json()["status"] in FINAL:
                if response.json()["status"] == "released":
                    self.api.call("result", "GET", f"/api/v1/jobs/{job_id}/result", self.world.analyst)
                with self.lock:
                    self.ended += 1
                return
            time.sleep(0.1)
        with self.lock:
            self.unfollowed.append(job_id)

    def poller(self, rng: random.Random, pause: float) -> None:
        """Until the load is done: the status of a random accepted job, every ``pause`` seconds."""
        while not self.done.wait(pause):
            with self.lock:
                known = list(self.accepted)
            if known:
                self.api.call("poll", "GET", f"/api/v1/jobs/{rng.choice(known)}", self.world.analyst)


def run_load(load: Load, submitters: int, pollers: int, rng: random.Random) -> float:
    """Run the submitters to the end of the queue, with the pollers beside them; the wall time."""
    poll_threads = [threading.Thread(target=load.poller, args=(random.Random(rng.random()), 0.1), daemon=True) for _ in range(pollers)]
    submit_threads = [threading.Thread(target=load.submitter, daemon=True) for _ in range(submitters)]
    started = time.perf_counter()
    for thread in poll_threads + submit_threads:
        thread.start()
    for thread in submit_threads:
        thread.join()
    load.done.set()
    for thread in poll_threads:
        thread.join()
    return time.perf_counter() - started


# --- checks and figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What the database holds at the end: jobs, terminal and release events per job, spends, outputs."""

    jobs: dict[str, Job]
    terminal: dict[str, list[str]]
    spend_events: Counter[str]
    spends: dict[str, BudgetSpend]
    outputs: set[str]

    @classmethod
    def read(cls, database_url: str) -> Stored:
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn, Session(bind=conn) as session:
                jobs = {job.id: job for job in session.scalars(select(Job))}
                terminal: dict[str, list[str]] = {job_id: [] for job_id in jobs}
                rows = session.execute(select(LedgerEvent.action, LedgerEvent.object_id).where(LedgerEvent.action.in_(TERMINAL_EVENTS)))
                for action, object_id in rows:
                    terminal.setdefault(object_id, []).append(action)
                details = session.scalars(select(LedgerEvent.details).where(LedgerEvent.action == "budget.spend"))
                spend_events = Counter(str(json.loads(d)["job_id"]) for d in details)
                spends = {s.job_id: s for s in session.scalars(select(BudgetSpend))}
                outputs = set(session.scalars(select(JobOutput.job_id)))
                session.expunge_all()
        finally:
            engine.dispose()
        return cls(jobs, terminal, spend_events, spends, outputs)


def check_jobs(checks: Checks, stored: Stored, load: Load) -> None:
    jobs = stored.jobs
    checks.check(f"every accepted job is stored, and no other ({len(load.accepted)} accepted)", set(jobs) == set(load.accepted),
                 f"stored only: {len(set(jobs) - set(load.accepted))}, accepted only: {len(set(load.accepted) - set(jobs))}")  # fmt: skip
    lost = [job_id for job_id, job in jobs.items() if job.status not in FINAL]
    checks.check("0 lost: every job ended in a final status", not lost, f"{len(lost)} not final: {[(j, jobs[j].status) for j in lost[:5]]}")
    wrong = {j: events for j, events in stored.terminal.items() if j not in jobs or events != [f"job.{jobs[j].status}"]}
    checks.check("one terminal ledger event per job, of its final status", not wrong, f"{len(wrong)}: {list(wrong.items())[:5]}")
    twice = [j for j, events in stored.terminal.items() if events.count("job.released") > 1]
    checks.check("0 released twice (ledger)", not twice, f"{twice[:5]}")
    extra = [j for j in stored.outputs if jobs[j].status not in ("released", "held", "blocked")]
    missing = [j for j, job in jobs.items() if job.status == "released" and j not in stored.outputs]
    checks.check("a sealed output for each released job, none for failed ones", not extra and not missing, f"{extra[:5]} {missing[:5]}")
    unexpected = [(j, load.accepted[j].category, job.status, job.reason) for j, job in jobs.items() if j in load.accepted
                  and not expected_end(load.accepted[j].category, job.status, job.reason or "")]  # fmt: skip
    checks.check("timed-out jobs failed with the timeout reason; the others released or held (or out of budget or attempts)",
                 not unexpected, f"{len(unexpected)}: {unexpected[:5]}")  # fmt: skip


def expected_end(category: str, status: str, reason: str) -> bool:
    if reason.startswith(ATTEMPTS):
        return status == "failed"
    if category == "timeout":
        return (status, reason) == ("failed", TIMEOUT_REASON)
    return status in ("released", "held") or (category == "dp" and (status, reason) == ("failed", EXHAUSTED))


def check_budget(checks: Checks, stored: Stored, load: Load, world: World, budget: dict[str, Any] | None) -> Fraction:
    """One spend per charged DP job, of its ε; the sum equals the grant's budget view; releases never pass the total.

    A DP job is charged when it is released, and when it ends otherwise after reading the data (failed,
    timed out, cancelled, blocked: a free failure would be an oracle), except when its release found the
    budget spent (nothing leaves, nothing is charged); a held one only at review.
    """
    epsilons = {j: load.accepted[j].epsilon for j in stored.jobs if load.accepted[j].epsilon is not None}
    charged = {j: eps for j, eps in epsilons.items() if charged_end(stored.jobs[j].status, stored.jobs[j].reason or "")}
    released = {j for j in charged if stored.jobs[j].status == "released"}
    checks.check(f"one spend per charged DP job, none for others ({len(released)} released, {len(charged) - len(released)} ended "
                 "otherwise after reading)", set(stored.spends) == set(charged),
                 f"spent only: {set(stored.spends) - set(charged)}, charged only: {set(charged) - set(stored.spends)}")  # fmt: skip
    twice = {j: n for j, n in stored.spend_events.items() if n != 1}
    checks.check("0 charged twice (one budget.spend ledger event per spend)", not twice and set(stored.spend_events) == set(stored.spends),
                 f"{twice}")  # fmt: skip
    spent = sum((Fraction(s.epsilon) for s in stored.spends.values()), Fraction(0))
    asked = sum((Fraction(repr(eps)) for eps in charged.values() if eps is not None), Fraction(0))
    checks.check(f"spent ε = sum of the charged jobs' ε ({float(spent):g})", spent == asked, f"spent {spent}, charged jobs' ε {asked}")
    shown = None if budget is None else budget.get("epsilon_spent")
    checks.check("the grant's budget view shows that spend", shown is not None and abs(shown - float(spent)) < 1e-9, f"view: {shown}")
    by_releases = sum((Fraction(stored.spends[j].epsilon) for j in released if j in stored.spends), Fraction(0))
    checks.check(f"releases stay within the grant's total ε {world.epsilon_total:g}", by_releases <= Fraction(repr(world.epsilon_total)))
    return spent


def charged_end(status: str, reason: str) -> bool:
    """Whether a DP job that ended so is charged (``sandbox.runtime.queue``: released, or ended after reading the data)."""
    return status == "released" or (status in ("failed", "cancelled", "blocked", "rejected") and reason != EXHAUSTED)


def check_http(checks: Checks, api: Api, load: Load) -> None:
    bad = Counter((what, status) for what, status, _ in api.calls if status >= 500 or status == 0)
    checks.check(f"no 5xx and no connection error ({len(api.calls):,} requests)", not bad, f"{dict(bad)} {dict(api.errors)}")
    if api.resent:
        print(f"  GETs sent once more after the server closed their kept-alive connection: {dict(api.resent)}")
    odd = [r for r in load.dry_runs if r[0] not in (200, 422)]
    checks.check(f"every heavy dry run answered 200 or 422 ({len(load.dry_runs)})", not odd, f"{odd}")
    checks.check("every submitter saw its job end", not load.unfollowed, f"{load.unfollowed[:5]}")


def audit_verify(env: dict[str, str]) -> tuple[bool, str]:
    """``python -m sandbox audit verify``: whether the ledger verifies, and what it said otherwise."""
    result = subprocess.run([sys.executable, "-m", "sandbox", "audit", "verify"], cwd=ROOT, env=env, capture_output=True, check=False)
    said = (result.stdout + result.stderr).decode(errors="replace")
    return result.returncode == 0, said[-1500:]


def keep_logs(folder: Path) -> None:
    """Copy the server's and the workers' logs out of the instance folder (deleted at the end); say where."""
    kept = Path(tempfile.mkdtemp(prefix="sandbox-soak-logs-"))
    for name in ("gunicorn.log", "workers.log"):
        if (folder / name).exists():
            shutil.copy(folder / name, kept / name)
    print(f"logs: {kept}")


def wait_for_orphans(fleet: Fleet, seconds: float) -> list[int]:
    """Job children of killed workers still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := fleet.left_behind()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(stored: Stored, load: Load, api: Api, fleet: Fleet, orphans_seen: int) -> dict[str, float]:
    jobs = list(stored.jobs.values())
    start_at, end_at = min(j.created_at for j in jobs), max(j.finished_at for j in jobs if j.finished_at)
    span = (end_at - start_at).total_seconds()
    released = [(j.finished_at - j.created_at).total_seconds() for j in jobs if j.status == "released" and j.finished_at]
    polls = [seconds for what, _, seconds in api.calls if what == "poll"]
    figures = {
        "jobs_per_second": sum(j.status in FINAL for j in jobs) / span,
        "latency_p50": percentile(released, 50),
        "latency_p99": percentile(released, 99),
        "api_p50": percentile(polls, 50),
        "api_p99": percentile(polls, 99),
    }
    print(f"\njobs: {len(jobs)} accepted, by final status {dict(Counter(j.status for j in jobs))}")
    print(f"  by kind of work: {dict(Counter(load.accepted[j.id].category for j in jobs))}")
    print(f"  failed, by work and reason: {dict(Counter((load.accepted[j.id].category, j.reason) for j in jobs if j.status == 'failed'))}")
    print(f"  retried after a kill (attempts > 1): {sum(j.attempts > 1 for j in jobs)}; refused at submission: {dict(load.refused)}")
    print(f"workers SIGKILLed: {len(fleet.killed)} ({fleet.busy_kills} mid-job); job children left running: {orphans_seen}")
    dry = Counter(f"{status} {code}".strip() for status, code, _ in load.dry_runs)
    print(f"heavy dry runs: {dict(dry)}, slowest {max((s for *_, s in load.dry_runs), default=0):.1f} s")
    print(f"\nthroughput: {figures['jobs_per_second']:.2f} jobs/s ({len(jobs)} jobs in {span:.1f} s, first submission to last end)")
    print(f"submit-to-release latency ({len(released)} released): p50 {figures['latency_p50']:.2f} s, p99 {figures['latency_p99']:.2f} s")
    print(f"API under the pollers ({len(polls):,} status reads): p50 {figures['api_p50'] * 1000:.0f} ms, "
          f"p99 {figures['api_p99'] * 1000:.0f} ms")  # fmt: skip
    return figures


# --- the run -----------------------------------------------------------------------------------


def soak(size: Size, cluster: str, seed: int, checks: Checks) -> dict[str, float]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="sandbox-soak-") as tmp, fresh_database(cluster) as database_url:
        folder = Path(tmp)
        env = instance_env(folder, database_url)
        port = free_port()
        admin = initialise(env)
        server = serve(env, folder, port)
        fleet: Fleet | None = None
        try:
            api = Api(f"http://127.0.0.1:{port}")
            world = make_world(api, admin, round(size.jobs * MIX["dp"] / 90))
            load = Load(api, world, tasks(world, size.jobs, rng))
            fleet = Fleet(env, folder, size.workers, rng)
            marks = [size.jobs * (k + 1) // (size.kills + 1) for k in range(size.kills)]
            killer = threading.Thread(target=fleet.killer, args=(load.finished, marks), daemon=True)
            killer.start()
            dry_runs = sum(t.category == "dry_run" for t in load.queue)
            print(f"{size.workers} workers (lease {LEASE_SECONDS:g} s), {size.jobs} jobs + {dry_runs} dry runs, {2 * size.workers} "
                  f"submitters, {size.pollers} pollers, {size.kills} workers SIGKILLed mid-job")  # fmt: skip
            run_load(load, 2 * size.workers, size.pollers, rng)
            fleet.stopping.set()
            killer.join()
            orphans_seen = len(fleet.left_behind())
            budget_response = api.call("budget", "GET", f"/api/v1/grants/{world.grants['dp']}/budget", world.analyst)
            budget = budget_response.json() if budget_response is not None and budget_response.status_code == 200 else None
            orphans = wait_for_orphans(fleet, 30)
            exits = fleet.stop()
        finally:
            if fleet is not None:
                fleet.stop()
            stop(server)
            keep_logs(folder)
        stored = Stored.read(database_url)
        check_jobs(checks, stored, load)
        check_budget(checks, stored, load, world, budget)
        check_http(checks, api, load)
        checks.check("no job child of a killed worker still running 30 s after the load", not orphans, f"{orphans}")
        checks.check("every worker stopped cleanly on SIGTERM", all(code == 0 for code in exits), f"exit statuses {exits}")
        checks.check("the ledger's hash chain verifies (sandbox audit verify)", *audit_verify(env))
        figures = report(stored, load, api, fleet, orphans_seen)
    checks.at_most("API p99 under the pollers", figures["api_p99"], API_P99_TARGET, " s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, help=f"worker processes (default {FULL.workers}; smoke {SMOKE.workers})")
    parser.add_argument("--jobs", type=int, help=f"jobs (default {FULL.jobs}; smoke {SMOKE.jobs})")
    parser.add_argument("--pollers", type=int, help=f"concurrent status pollers (default {FULL.pollers}; smoke {SMOKE.pollers})")
    parser.add_argument("--kills", type=int, help=f"worker SIGKILLs (default {FULL.kills}; smoke {SMOKE.kills})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="a PostgreSQL cluster URL (default: SANDBOX_TEST_DATABASE_URL or scripts/postgres-test.sh)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    base = SMOKE if args.smoke else FULL
    kills = base.kills if args.kills is None else args.kills
    size = Size(args.workers or base.workers, args.jobs or base.jobs, args.pollers or base.pollers, kills)
    checks = Checks(args.smoke)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: terminated"))  # so that the processes and the database are cleaned up
    started = time.perf_counter()
    soak(size, cluster_url(args.database_url), args.seed, checks)
    print(f"wall time {time.perf_counter() - started:.0f} s on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
