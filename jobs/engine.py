"""Query engines: run a validated, rewritten plan over in-memory Arrow tables.

The engine sits behind a small interface so that another engine (e.g. Spark, for data that
outgrows one machine) can take the same validated plan. Tables are registered by dataset name;
data stays in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

import duckdb
import pyarrow as pa

from core.errors import SandboxError


class QueryInterrupted(SandboxError):
    code = "interrupted"
    status = 409


class Engine(Protocol):
    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        """Execute ``sql`` over ``tables``; stop early when ``interrupt`` is set."""
        ...


class DuckDBEngine:
    """DuckDB in-process, one fresh in-memory connection per run.

    The connection cannot touch files or the network (``enable_external_access`` off, then the
    configuration locked), so even a query that slipped past validation could only read the
    registered tables.
    """

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.threads = threads
        self.memory_limit = memory_limit

    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        con = duckdb.connect(":memory:")
        try:
            for name, table in tables.items():
                con.register(name, table)
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            if self.memory_limit:
                con.execute("SET memory_limit = ?", [self.memory_limit])
            con.execute("SET enable_progress_bar = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            return self._execute(con, sql, interrupt)
        finally:
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
        finally:
            done.set()


def _watch(con: duckdb.DuckDBPyConnection, interrupt: threading.Event, done: threading.Event) -> None:
    """While the query runs, interrupt it (again and again: one sent before it starts is lost) once asked to."""
    while not done.wait(0.02):
        if interrupt.is_set():
            con.interrupt()
