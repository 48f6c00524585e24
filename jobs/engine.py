"""Query engines: run a validated, rewritten plan over in-memory Arrow tables.

The engine sits behind a small interface so that another engine (e.g. Spark, for data that
outgrows one machine) can take the same validated plan. Tables are registered by dataset name;
data stays in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import duckdb
import pyarrow as pa

from core.errors import SandboxError

# A job's working memory when the caller states none (the worker states SANDBOX_JOB_MEMORY_MB).
DEFAULT_MEMORY_MB = 4096


class QueryInterrupted(SandboxError):
    code = "interrupted"
    status = 409


class MemoryLimitExceeded(SandboxError):
    """The query needed more working memory than the job may have. The message is fixed text: it says
    nothing about the data (DuckDB's own message names sizes, which depend on it)."""

    code = "memory_limit"
    status = 413

    def __init__(self) -> None:
        super().__init__("the job exceeded its memory limit")


class Engine(Protocol):
    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        """Execute ``sql`` over ``tables``; stop early when ``interrupt`` is set."""
        ...


class DuckDBEngine:
    """DuckDB in-process, one fresh in-memory database per run.

    The database cannot touch files or the network (``enable_external_access`` off, then the
    configuration locked, before any table is registered), so even a query that slipped past
    validation could only read the registered tables.

    Nor does it ever write to disk: DuckDB offloads intermediate data that outgrows ``memory_limit``
    to ``temp_directory``, which for an in-memory database defaults to ``./.tmp`` — decrypted data in
    plaintext files. ``temp_directory`` is set to ``''`` (offloading disabled; with the limit at zero
    bytes too) before anything else, so a query past ``memory_mb`` fails with ``MemoryLimitExceeded``
    instead of spilling. ``memory_mb`` bounds DuckDB's own buffers (hash tables, sorts, results), not
    the registered Arrow tables, which the caller holds.

    Making an in-memory database costs about 13 ms (DuckDB fills its catalog with every built-in
    function) and closing one about 3 ms, more than a small query itself. With ``prepare_next`` (for
    a long-lived worker running one job after another), each run's database is closed and the next
    run's made and sealed on a background thread, which DuckDB lets run beside Python (it releases
    the GIL). ``prepare`` starts making the first run's database likewise (a job's child process
    calls it before it decrypts and reads its tables). Isolation is unchanged: every run gets a
    database no other run has used.
    """

    def __init__(self, threads: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB, *, prepare_next: bool = False) -> None:
        if memory_mb < 1:
            raise ValueError("memory_mb must be positive")
        self.threads = threads
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self._spare: Future[duckdb.DuckDBPyConnection] | None = None
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-next") if prepare_next else None

    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        con = self._fresh()
        try:
            for name, table in tables.items():
                con.register(name, table)
            return self._execute(con, sql, interrupt)
        finally:
            self._retire(con)

    def prepare(self) -> None:
        """Start making the next run's database now, on a background thread, unless one is made or being made already."""
        with self._lock:
            if self._spare is not None:
                return
            if self._background is not None:
                self._spare = self._background.submit(self._sealed)
                return
            once = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-first")
            self._spare = once.submit(self._sealed)
            once.shutdown(wait=False)  # the thread ends with its one task

    def close(self) -> None:
        """Close the prepared database, if any, and stop the background thread (idempotent)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.result().close()
        if self._background is not None:
            self._background.shutdown(wait=True)

    def _sealed(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory database, its settings applied and then locked."""
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET temp_directory = ''")
            con.execute("SET max_temp_directory_size = '0B'")
            con.execute(f"SET memory_limit = '{int(self.memory_mb)}MiB'")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            con.execute("SET enable_progress_bar = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con

    def _fresh(self) -> duckdb.DuckDBPyConnection:
        """A sealed database no run has used: the one prepared in the background, or a new one."""
        with self._lock:
            spare, self._spare = self._spare, None
        return spare.result() if spare is not None else self._sealed()

    def _retire(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close ``con``; with ``prepare_next``, close it and make the next run's database in the background."""
        if self._background is None:
            con.close()
            return
        with self._lock:
            try:
                self._background.submit(con.close)
                if self._spare is None:
                    self._spare = self._background.submit(self._sealed)
            except RuntimeError:  # closed meanwhile: no background thread any more
                con.close()

    def _execute(self, con: duckdb.DuckDBPyConnection, sql: str, interrupt: threading.Event | None) -> pa.Table:
        done = threading.Event()
        if interrupt is not None:
            watcher = threading.Thread(target=_watch, args=(con, interrupt, done), daemon=True)
            watcher.start()
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.InterruptException:
            raise QueryInterrupted("the query was interrupted") from None
        except duckdb.OutOfMemoryException:
            raise MemoryLimitExceeded from None
        finally:
            done.set()


def _watch(con: duckdb.DuckDBPyConnection, interrupt: threading.Event, done: threading.Event) -> None:
    """While the query runs, interrupt it (again and again: one sent before it starts is lost) once asked to."""
    while not done.wait(0.02):
        if interrupt.is_set():
            con.interrupt()
