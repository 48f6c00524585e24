"""Fixed datasets and policy for the query-job tests: PUMS (one person per row) and a tax register.

``pums`` is the schema stewards upload for PUMS_pid (``tests.conftest.PUMS_META``); ``tax`` shares its
privacy unit ``pid`` so that joins can be tested. The policy is the one every corpus case runs under.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from core.schema import DatasetMeta, DatasetSchema
from policies.model import Policy
from tests.conftest import PUMS_META, data_file

TAX_META: dict[str, Any] = {
    "name": "tax",
    "title": "Tax register extract",
    "level": "重要",
    "privacy_unit": "pid",
    "columns": {
        "pid": {"role": "identifier", "type": "int"},
        "industry": {"role": "quasi_identifier", "type": "string"},
        "tax_paid": {"role": "sensitive", "type": "float", "bounds": [0, 1_000_000]},
        "filed": {"role": "attribute", "type": "date"},
        "firm_id": {"role": "identifier", "type": "int"},
        # Sensitive columns granted as dimensions: a coded category (a key through its domain) and a rate (through bins).
        "bracket": {"role": "sensitive", "type": "int", "domain": [1, 2, 3, 4, 5]},
        "rate": {"role": "sensitive", "type": "float", "bounds": [0, 50]},
        # A provider-encrypted column (``he`` jobs only): every SQL use of it is refused.
        "tax_enc": {"role": "sensitive", "type": "paillier", "paillier": {"key": "a" * 64, "scale": 2}},
    },
}

SCHEMAS: dict[str, DatasetSchema] = {
    "pums": DatasetMeta.model_validate(PUMS_META).schema_only(),
    "tax": DatasetMeta.model_validate(TAX_META).schema_only(),
}

# firm_id is not named: deny. stddev and variance are not listed: refused.
POLICY = Policy.model_validate(
    {
        "columns": {
            "pums": {
                "age": "dimension",
                "sex": "dimension",
                "educ": "dimension",
                "race": "dimension",
                "income": "measure",
                "married": "plain",
                "pid": "join_key",
            },
            "tax": {
                "pid": "join_key",
                "industry": "dimension",
                "tax_paid": "measure",
                "filed": "dimension",
                "tax_enc": "measure",
                "bracket": "dimension",
                "rate": "dimension",
            },
        },
        "aggregates": ["count", "count_distinct", "sum", "avg", "median", "quantile", "min", "max"],
        "job_kinds": ["query"],
    }
)


@pytest.fixture
def policy() -> Policy:
    return POLICY


@pytest.fixture
def schemas() -> dict[str, DatasetSchema]:
    return dict(SCHEMAS)


def read_pums(name: str) -> pd.DataFrame:
    """A PUMS file of the shared data: ``PUMS_pid.csv`` (one row per person) or ``PUMS_dup.csv`` (up to 4)."""
    return pd.read_csv(data_file(f"smartnoise-sdk/{name}")).astype({"income": "int64"})


def frames_to_tables(pums: pd.DataFrame) -> dict[str, pa.Table]:
    """The engine's input: ``pums`` and a tax register derived from its persons, as Arrow tables."""
    return {"pums": pa.Table.from_pandas(pums, preserve_index=False), "tax": pa.Table.from_pandas(tax_register(pums), preserve_index=False)}


@pytest.fixture(scope="session")
def tables() -> dict[str, pa.Table]:
    """PUMS_pid as uploaded, and a small tax register for some of its persons (one or two rows each)."""
    return frames_to_tables(read_pums("PUMS_pid.csv"))


def tax_register(pums: pd.DataFrame) -> pd.DataFrame:
    """Deterministic tax rows: persons whose pid is not a multiple of 3; every fourth of them has two rows."""
    people = pd.Series(pums.loc[pums.pid % 3 != 0, "pid"].unique())
    pids = pd.concat([people, people[people % 4 == 1]]).sort_values(ignore_index=True)
    return pd.DataFrame(
        {
            "pid": pids,
            "industry": pids.map(lambda pid: "ABCDE"[pid % 5]),
            "tax_paid": pids * 10.0,
            "filed": (pd.Timestamp("2020-01-01") + pd.to_timedelta(pids % 1000, unit="D")).dt.date,
            "firm_id": pids % 50,
            "bracket": pids % 5 + 1,
            "rate": (pids % 500) / 10.0,
            "tax_enc": pids.map(lambda pid: int(pid).to_bytes(8, "big")),  # stands in for ciphertexts: never read
        }
    )


def run(sql: str, tables: dict[str, pa.Table]) -> pa.Table:
    """Execute a plan's SQL as the engine does: a fresh in-memory DuckDB that cannot touch files."""
    con = duckdb.connect(":memory:")
    try:
        for name, table in tables.items():
            con.register(name, table)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
