"""Fixtures for statistics jobs: a stats policy factory, PUMS as Arrow tables, and a runner.

The datasets and schemas are the query tests' (``tests/jobs/conftest.py``); the policy differs:
statistics need every aggregate, and ``age`` is a dimension by default (a measure for models).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from jobs.engine import DuckDBEngine
from jobs.stats import StatsResult, plan, run
from policies.model import Aggregate, Disclosure, Policy
from tests.conftest import data_file
from tests.jobs.conftest import POLICY, SCHEMAS, read_pums

ENGINE = DuckDBEngine()


def stats_policy(aggregates: frozenset[Aggregate] | None = None, disclosure: Disclosure | None = None, **uses: str) -> Policy:
    """The query tests' PUMS uses (``uses`` override them; ``"deny"`` denies), every aggregate, job kind stats."""
    columns = {**POLICY.columns["pums"], **uses}
    return Policy.model_validate(
        {
            "columns": {"pums": columns, "tax": POLICY.columns["tax"]},
            "aggregates": sorted(aggregates if aggregates is not None else frozenset(Aggregate)),
            "job_kinds": ["stats"],
            "disclosure": disclosure or Disclosure(),
        }
    )


def compute(
    spec: dict[str, Any], tables: dict[str, pa.Table], policy: Policy | None = None, settings: Disclosure | None = None
) -> StatsResult:
    """Plan ``spec`` (dataset pums unless given) and run it as a worker would."""
    chosen = policy or stats_policy()
    planned = plan({"dataset": "pums", **spec}, chosen, SCHEMAS)
    return run(planned, tables, ENGINE, settings or chosen.disclosure)


def read_nulls() -> pd.DataFrame:
    """PUMS with missing values in every column; rows without a person are dropped (a unit is always known)."""
    frame = pd.read_csv(data_file("smartnoise-sdk/PUMS_null.csv"))
    return frame.dropna(subset=["pid"]).astype(dict.fromkeys(frame.columns, "Int64"))


@pytest.fixture(scope="session")
def pums() -> pd.DataFrame:
    return read_pums("PUMS_pid.csv")


@pytest.fixture(scope="session")
def pums_dup() -> pd.DataFrame:
    """Up to four rows per person: rows and privacy units differ."""
    return read_pums("PUMS_dup.csv")


@pytest.fixture(scope="session")
def pums_null() -> pd.DataFrame:
    return read_nulls()


FRAMES = {"pid": "pums", "dup": "pums_dup", "null": "pums_null"}


@pytest.fixture(scope="session", params=["pid", "dup"])
def frame(request: pytest.FixtureRequest) -> pd.DataFrame:
    """PUMS with one row per person, then with several: every table oracle runs on both."""
    result: pd.DataFrame = request.getfixturevalue(FRAMES[request.param])
    return result


def as_tables(frame: pd.DataFrame) -> dict[str, pa.Table]:
    """The engine's input: ``frame`` as the ``pums`` dataset."""
    return {"pums": pa.Table.from_pandas(frame, preserve_index=False)}
