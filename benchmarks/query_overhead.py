"""Query-job overhead: the sandbox end to end against the floor of decrypt + Parquet + DuckDB, and raw DuckDB.

Data: a seeded PUMS-like table (age, sex, educ, race, income, married, pid) of N rows, drawn
column by column from the marginal distributions of the 1,000-person PUMS sample (resampled with
replacement, numpy seed 2024); pid is unique per row. It is loaded as an encrypted dataset of a
fresh embedded instance (SQLite, files in a temporary folder).

Times, on the same data and SQL, in one run:
  (a) end to end: submit over HTTP (gunicorn) -> one worker process -> released -> result read;
  (b) the floor: read the stored file, decrypt it, read the Parquet, run the query in DuckDB;
  (c) raw DuckDB over the plaintext Arrow table already in memory.
Also the worker's peak resident memory (VmHWM) against the Arrow table's size.

    .venv/bin/python benchmarks/query_overhead.py            # 1M and 10M rows
    .venv/bin/python benchmarks/query_overhead.py --rows 1000000
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.schema import DatasetMeta  # noqa: E402
from core.values import OrgKind, Role  # noqa: E402
from crypto import envelope  # noqa: E402
from sandbox import bootstrap as setup  # noqa: E402
from sandbox import create_app  # noqa: E402
from sandbox.client import Client  # noqa: E402
from sandbox.db import get_db_of  # noqa: E402
from sandbox.demo.seed import PUMS_META, PUMS_POLICY  # noqa: E402
from sandbox.keys import version_context  # noqa: E402
from sandbox.service import grants  # noqa: E402
from sandbox.service.auth import principal_of  # noqa: E402
from sandbox.service.identity import create_org, create_user  # noqa: E402

SQL = "SELECT race, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY race ORDER BY race"
REPEATS = 5


def make_table(rows: int) -> pa.Table:
    source = pd.read_csv(ROOT / "sandbox" / "demo" / "data" / "pums.csv")
    rng = np.random.default_rng(2024)
    columns = {
        name: rng.choice(source[name].to_numpy().astype(np.int64), size=rows)
        for name in ("age", "sex", "educ", "race", "income", "married")
    }
    columns["pid"] = np.arange(1, rows + 1, dtype=np.int64)
    return pa.table(columns)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def instance(folder: Path, table: pa.Table) -> tuple[dict[str, str], str, object]:
    env = {"SANDBOX_INSTANCE_PATH": str(folder), "SANDBOX_DATABASE_URL": f"sqlite:///{folder}/sandbox.db"}
    os.environ.update(env)
    app = create_app()
    setup.initialise(app)
    db, ledger = get_db_of(app), app.extensions["sandbox.ledger"]
    with db.writing() as session:
        bureau = create_org(session, ledger, "bench", "Bureau", OrgKind.BUREAU)
        bank = create_org(session, ledger, "bench", "Bank", OrgKind.ENTERPRISE)
        steward, _, _ = create_user(session, ledger, "bench", "steward", bureau.id, Role.STEWARD)
        analyst, _, analyst_token = create_user(session, ledger, "bench", "analyst", bank.id, Role.ANALYST)
        steward_p, analyst_p = principal_of(steward), principal_of(analyst)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    dataset = app.extensions["sandbox.datasets"].create(steward_p, DatasetMeta.model_validate(PUMS_META), "pums.parquet", sink.getvalue())
    with db.writing() as session:
        grant = grants.request_grant(
            session, ledger, analyst_p, [dataset.id], "benchmark of query overhead", {"job_kinds": ["query", "stats"]}
        )
        grants.approve(session, ledger, steward_p, grant.id, PUMS_POLICY, datetime.now(UTC) + timedelta(days=1))
        grant_id = grant.id
    return env, analyst_token, (app, dataset.id, grant_id)


def floor_time(app: object, dataset_id: str) -> float:
    """(b): decrypt the stored file by hand, read the Parquet, run the query."""
    service = app.extensions["sandbox.datasets"]  # type: ignore[attr-defined]
    version = service.get(dataset_id).current
    keys = service.keys
    start = time.perf_counter()
    data_key = keys.unwrap(version.wrapped_key, version.master_key_id, context=version_context(version.id))
    blob = (service.store.root / version.path).read_bytes()
    table = pq.read_table(pa.BufferReader(envelope.decrypt(data_key, blob, key_id=version.id)))
    con = duckdb.connect()
    con.register("pums", table)
    con.sql(SQL).to_arrow_table()
    con.close()
    return time.perf_counter() - start


def raw_time(table: pa.Table) -> float:
    con = duckdb.connect()
    con.register("pums", table)
    start = time.perf_counter()
    con.sql(SQL).to_arrow_table()
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def run(rows: int) -> dict[str, float]:
    table = make_table(rows)
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        env, token, (app, dataset_id, grant_id) = instance(Path(tmp), table)
        port = free_port()
        server_env = {**os.environ, **env}
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "wsgi:app"],
            cwd=ROOT,
            env=server_env,
            stderr=subprocess.DEVNULL,
        )
        worker = subprocess.Popen([sys.executable, "-m", "sandbox", "worker"], cwd=ROOT, env=server_env, stderr=subprocess.DEVNULL)
        try:
            client = Client(f"http://127.0.0.1:{port}", token)
            for _ in range(100):
                try:
                    client.me()
                    break
                except Exception:
                    time.sleep(0.1)
            client.wait(client.submit_query(grant_id, SQL), poll=0.01, progress=False)  # warm-up
            end_to_end = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                client.wait(client.submit_query(grant_id, SQL), poll=0.01, progress=False)
                end_to_end.append(time.perf_counter() - start)
            peak = peak_rss(worker.pid)
        finally:
            worker.terminate()
            server.terminate()
            worker.wait(10)
            server.wait(10)
        floor = statistics.median(floor_time(app, dataset_id) for _ in range(REPEATS))
        raw = statistics.median(raw_time(table) for _ in range(REPEATS))
        get_db_of(app).engine.dispose()
    a = statistics.median(end_to_end)
    return {"rows": rows, "a": a, "b": floor, "c": raw, "peak": peak, "table": table.nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows (repeatable); default 1M and 10M")
    args = parser.parse_args()
    print(f"SQL: {SQL}\nmedian of {REPEATS} runs each\n")
    header = ("rows", "(a) e2e s", "(b) floor s", "(c) raw s", "a/b", "a/c", "a <= 2b+0.2 s", "peak MB", "table MB", "peak/table")
    print("  ".join(f"{h:>13}" for h in header))
    for rows in args.rows or [1_000_000, 10_000_000]:
        r = run(rows)
        target = 2 * r["b"] + 0.2
        cells = (
            f"{r['rows']:,}",
            f"{r['a']:.3f}",
            f"{r['b']:.3f}",
            f"{r['c']:.3f}",
            f"{r['a'] / r['b']:.2f}",
            f"{r['a'] / r['c']:.1f}",
            f"{'yes' if r['a'] <= target else 'NO'} ({target:.2f})",
            f"{r['peak'] / 2**20:.0f}",
            f"{r['table'] / 2**20:.0f}",
            f"{r['peak'] / r['table']:.2f}",
        )
        print("  ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
