"""The DuckDB engine is sealed: even SQL that slipped past validation reads only the registered tables."""

from __future__ import annotations

import threading
import time

import duckdb
import pyarrow as pa
import pytest

from jobs.engine import DuckDBEngine, QueryInterrupted

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
def test_no_file_network_or_configuration_escape(sql: str) -> None:
    with pytest.raises(duckdb.Error):
        DuckDBEngine().run(sql, TABLES)


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
