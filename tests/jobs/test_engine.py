"""The DuckDB engine is sealed: even SQL that slipped past validation reads only the registered tables."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from jobs.engine import DuckDBEngine, MemoryLimitExceeded, QueryInterrupted

TABLES = {"t": pa.table({"a": [1, 2, 2], "pid": [1, 2, 3]})}

ESCAPES = {
    "read-file": "SELECT * FROM read_csv('/etc/passwd')",
    "read-text": "SELECT * FROM read_text('/etc/hostname')",
    "copy-out": "COPY t TO '/tmp/sandbox-engine-leak.csv'",
    "attach": "ATTACH '/tmp/sandbox-engine-leak.db' AS other",
    "reenable": "SET enable_external_access = true",
    "install": "INSTALL httpfs",
}


@pytest.mark.parametrize("sql", ESCAPES.values(), ids=ESCAPES.keys())
@pytest.mark.parametrize("prepare_next", [False, True], ids=["fresh", "prepared"])
def test_no_file_network_or_configuration_escape(sql: str, prepare_next: bool) -> None:
    engine = DuckDBEngine(prepare_next=prepare_next)
    try:
        engine.run("SELECT 1", TABLES)  # so that the next database is a prepared one
        with pytest.raises(duckdb.Error):
            engine.run(sql, TABLES)
    finally:
        engine.close()


@pytest.mark.parametrize("prepare_next", [False, True], ids=["fresh", "prepared"])
def test_each_run_has_a_database_of_its_own(prepare_next: bool) -> None:
    engine = DuckDBEngine(prepare_next=prepare_next)
    try:
        assert engine.run("CREATE TABLE left_behind AS SELECT 42 AS v; SELECT v FROM left_behind", TABLES).to_pylist() == [{"v": 42}]
        with pytest.raises(duckdb.CatalogException):
            engine.run("SELECT v FROM left_behind", TABLES)
        with pytest.raises(duckdb.CatalogException):
            engine.run("SELECT a FROM t", {"u": TABLES["t"]})  # a table registered for an earlier run is gone too
    finally:
        engine.close()


@pytest.mark.parametrize("prepare_next", [False, True], ids=["fresh", "prepared"])
def test_settings_apply_to_every_database(prepare_next: bool) -> None:
    engine = DuckDBEngine(threads=1, memory_mb=512, prepare_next=prepare_next)
    try:
        for _ in range(2):
            settings = engine.run("SELECT current_setting('threads') AS threads, current_setting('memory_limit') AS memory", TABLES)
            assert settings.to_pylist() == [{"threads": 1, "memory": "512.0 MiB"}]
    finally:
        engine.close()


@pytest.mark.parametrize("prepare_next", [False, True], ids=["fresh", "prepared"])
def test_a_database_made_beforehand_is_sealed_set_and_used_once(prepare_next: bool) -> None:
    """``prepare`` (a job's child, before it loads its tables): the first database is made in the background, sealed like any other."""
    engine = DuckDBEngine(threads=1, memory_mb=512, prepare_next=prepare_next)
    try:
        engine.prepare()
        engine.prepare()  # idempotent: one database waiting
        spare = engine._spare
        assert spare is not None
        settings = "SELECT current_setting('threads') AS threads, current_setting('memory_limit') AS memory"
        assert engine.run(settings, TABLES).to_pylist() == [{"threads": 1, "memory": "512.0 MiB"}]
        assert engine._spare is not spare  # taken by that run
        with pytest.raises(duckdb.Error):
            engine.run("SET enable_external_access = true", TABLES)
        assert engine.run("CREATE TABLE left_behind AS SELECT 42 AS v; SELECT v FROM left_behind", TABLES).to_pylist() == [{"v": 42}]
        with pytest.raises(duckdb.CatalogException):
            engine.run("SELECT v FROM left_behind", TABLES)
    finally:
        engine.close()


def test_a_closed_engine_still_runs_without_preparing() -> None:
    engine = DuckDBEngine(prepare_next=True)
    engine.run("SELECT 1", TABLES)
    engine.close()
    engine.close()
    assert engine.run("SELECT COUNT(*) AS n FROM t", TABLES).to_pylist() == [{"n": 3}]


def test_registered_tables_are_queried() -> None:
    result = DuckDBEngine().run("SELECT a, COUNT(DISTINCT pid) AS units FROM t GROUP BY a ORDER BY a", TABLES)
    assert result.to_pylist() == [{"a": 1, "units": 1}, {"a": 2, "units": 2}]


def test_interrupt_stops_a_long_query() -> None:
    interrupt = threading.Event()
    threading.Timer(0.2, interrupt.set).start()
    start = time.monotonic()
    with pytest.raises(QueryInterrupted):
        DuckDBEngine().run("SELECT COUNT(*) FROM range(1000000000) a, range(1000) b", TABLES, interrupt)
    assert time.monotonic() - start < 10


MARKER = b"PLAINTEXT-MARKER-"


def _files(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("prepare_next", [False, True], ids=["fresh", "prepared"])
def test_a_query_past_the_memory_limit_fails_and_writes_nothing(
    prepare_next: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB would offload to ``./.tmp`` (in-memory databases' default); the engine refuses instead."""
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(scratch))
    names = pa.array([f"{MARKER.decode()}{i:09d}" for i in range(1_500_000)])
    tables = {"t": pa.table({"pid": pa.array(range(len(names))), "name": names})}
    engine = DuckDBEngine(threads=1, memory_mb=48, prepare_next=prepare_next)
    try:
        with pytest.raises(MemoryLimitExceeded) as raised:
            engine.run("SELECT COUNT(DISTINCT name) AS n, COUNT(DISTINCT name || pid) AS m FROM t", tables)
        assert raised.value.message == "the job exceeded its memory limit"
        assert engine.run("SELECT COUNT(*) AS n FROM t", tables).to_pylist() == [{"n": len(names)}]  # the engine still works
    finally:
        engine.close()
    written = _files(cwd, scratch)
    assert written == {}, sorted(str(p) for p in written)


def test_memory_limit_is_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DuckDBEngine(memory_mb=0)
