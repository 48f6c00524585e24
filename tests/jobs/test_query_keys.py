"""jobs.query.keys: each group key's declared values, evaluated over the loaded column's type."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pyarrow as pa
import pytest

from jobs.engine import DuckDBEngine
from jobs.query.keys import VALUES_TABLE, layout
from jobs.query.validate import validate
from tests.jobs.conftest import POLICY, SCHEMAS

TAX = pa.table({"pid": pa.array([], pa.int64()), "bracket": pa.array([], pa.int64()), "rate": pa.array([], pa.float64())})


class Counting:
    """DuckDB, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, sql: str, tables: Mapping[str, pa.Table], interrupt: threading.Event | None = None) -> pa.Table:
        self.runs += 1
        return DuckDBEngine().run(sql, tables, interrupt)


@pytest.mark.parametrize(
    ("sql", "runs"),
    [
        pytest.param("SELECT bracket, COUNT(*) AS n FROM tax GROUP BY bracket", 0, id="bare"),
        pytest.param("SELECT bracket + 1 AS b, COUNT(*) AS n FROM tax GROUP BY bracket + 1", 1, id="expression"),
        pytest.param("SELECT FLOOR(rate / 10) AS r, COUNT(*) AS n FROM tax GROUP BY FLOOR(rate / 10)", 1, id="bins"),
    ],
)
def test_a_bare_key_takes_its_declared_values_and_others_are_evaluated(sql: str, runs: int) -> None:
    plan = validate(sql, POLICY, SCHEMAS)
    assert plan.keys is not None
    assert plan.keys.sources is not None
    engine = Counting()
    laid = layout(plan, engine, {"tax": TAX})
    assert engine.runs == runs  # a bare key costs no database
    for source, domain in zip(plan.keys.sources, laid.domains, strict=True):
        assert source is not None
        values = pa.table({"__v": pa.array(list(source.values)).cast(TAX.schema.field(source.column).type)})
        evaluated = DuckDBEngine().run(source.sql, {VALUES_TABLE: values}).column("k").to_pylist()
        assert domain is not None
        assert sorted(domain) == sorted(v for v in evaluated if v is not None)
        assert len(set(domain)) == len(domain)
