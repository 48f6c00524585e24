"""Uploads are bounded by what they decompress to: a decompression bomb is a 413 before it is materialised.

The bomb is the issue's: a Parquet file of a few hundred kilobytes holding 50 million identical rows
(dictionary and run-length encoded). It is uploaded in a fresh subprocess whose peak resident memory
during the request is measured; the bound stated in the README is asserted here.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask

from jobs.bounded import IngestLimits
from sandbox.service.datasets import ingest_limits
from tests.conftest import World, auth
from tests.sandbox.hekit import upload_bytes

REPO = Path(__file__).resolve().parents[2]
BOMB_ROWS = 50_000_000
RSS_BOUND = 64 * 1024 * 1024  # the web process's growth for refusing the bomb (README, security model)
META: dict[str, Any] = {
    "name": "bomb",
    "title": "Fifty million identical rows",
    "level": "一般",
    "privacy_unit": "pid",
    "columns": {"pid": {"role": "identifier", "type": "int"}, "income": {"role": "sensitive", "type": "int", "bounds": [0, 10]}},
}


def _parquet(table: pa.Table, copies: int = 1) -> bytes:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema) as writer:
        for _ in range(copies):
            writer.write_table(table, row_group_size=table.num_rows)
    return bytes(sink.getvalue().to_pybytes())


def _bomb() -> bytes:
    block = pa.table({"pid": pa.array([1] * 1_000_000, pa.int64()), "income": pa.array([1] * 1_000_000, pa.int64())})
    return _parquet(block, BOMB_ROWS // block.num_rows)


@pytest.mark.sqlite_only
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures peak memory with Linux's /proc/self/clear_refs")
def test_a_decompression_bomb_is_refused_within_a_memory_bound(app: Flask, world: World, tmp_path: Path) -> None:
    bomb = _bomb()
    assert len(bomb) < 1024 * 1024
    (tmp_path / "bomb.parquet").write_bytes(bomb)
    (tmp_path / "meta.json").write_text(json.dumps(META))
    args = [
        app.config["INSTANCE_PATH"],
        app.config["DATABASE_URL"],
        world.steward,
        str(tmp_path / "meta.json"),
        str(tmp_path / "bomb.parquet"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "tests.sandbox.upload_rss", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert (result["status"], result["code"]) == (413, "upload_too_large")
    assert result["growth_bytes"] < RSS_BOUND, result


LIMITS = {
    "MAX_UPLOAD_ROWS": ("max_upload_rows", 999),
    "MAX_UPLOAD_COLUMNS": ("max_upload_columns", 1),
    "MAX_UPLOAD_CELLS": ("max_upload_cells", 1_999),
    "MAX_UPLOAD_DECODED_BYTES": ("max_upload_decoded_bytes", 15_000),
}
SMALL = pa.table({"pid": pa.array(range(1000), pa.int64()), "income": pa.array([i % 10 for i in range(1000)], pa.int64())})


def _xlsx(table: pa.Table) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(table.column_names)
    for row in zip(*(table[name].to_pylist() for name in table.column_names), strict=True):
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _small(fmt: str) -> bytes:
    return {"parquet": _parquet, "csv": _csv, "xlsx": _xlsx}[fmt](SMALL)


def _csv(table: pa.Table) -> bytes:
    return "\n".join(
        ["pid,income", *(f"{p},{i}" for p, i in zip(table["pid"].to_pylist(), table["income"].to_pylist(), strict=True))]
    ).encode()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "xlsx"])
@pytest.mark.parametrize("setting", list(LIMITS), ids=[k.lower() for k in LIMITS])
def test_each_limit_refuses_with_413_naming_it_and_stores_nothing(app: Flask, world: World, setting: str, fmt: str) -> None:
    name, maximum = LIMITS[setting]
    app.config[setting] = maximum
    app.extensions["sandbox.datasets"].limits = ingest_limits(app.config)
    response = upload_bytes(world, META, _small(fmt), f"small.{fmt}")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (413, "upload_too_large"), error
    assert error["details"] == {"limit": name, "maximum": maximum}
    assert f"SANDBOX_{setting}" in error["message"]
    assert world.client.get("/api/v1/datasets", headers=auth(world.steward)).get_json()["items"] == []
    assert not list((Path(app.config["INSTANCE_PATH"]) / "data").rglob("*.sbxe"))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "xlsx"])
def test_a_table_at_the_limits_is_accepted(app: Flask, world: World, fmt: str) -> None:
    app.config.update(MAX_UPLOAD_ROWS=1000, MAX_UPLOAD_COLUMNS=2, MAX_UPLOAD_CELLS=2000, MAX_UPLOAD_DECODED_BYTES=10**9)
    app.extensions["sandbox.datasets"].limits = ingest_limits(app.config)
    response = upload_bytes(world, META, _small(fmt), f"small.{fmt}")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["row_count"] == 1000


def test_limits_are_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        IngestLimits(max_rows=0, max_columns=1, max_cells=1, max_decoded_bytes=1)
