"""Reconstruction attacks on DP grants, driven through the API and the worker like any analyst's jobs.

Dinur and Nissim's linear reconstruction: answers to a few times n random-subset counts over n persons (2n here)
determine each person's secret bit by least squares, unless every answer carries noise of order √n
or more. Here n = 150 persons of PUMS_pid (pid 1..150, one row each) and the secret is ``married``.

How the analyst names a subset. The query validator never lets the privacy-unit column (``pid``), nor
any identifier, be filtered on, under any policy (``policies.model``: it may only be denied or a join
key). What singles people out in practice is their quasi-identifiers: (age, sex, educ, race) alone is
unique for 144 of these 150 persons. So the steward publishes the slice with ``person``, a row label
1..150 declared a quasi-identifier with that public domain and granted as a dimension: the same power
in a form a ``WHERE person IN (...)`` can use. Nothing else protects the persons here: DP jobs skip
threshold suppression and the differencing check, so the budget is the only defence under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from numpy.typing import NDArray

from jobs.engine import DuckDBEngine
from tests.conftest import PUMS_META, World, auth, data_file, request_grant
from tests.sandbox.jobkit import approve, run_worker, submit

PERSONS = 150
QUERIES = 2 * PERSONS
EPSILON_TOTAL = 1.2  # the grant's whole budget ...
EPSILON_PER_QUERY = 0.004  # ... spread evenly: 300 * 0.004 = 1.2 exactly in the ledger's decimal arithmetic
SEED = 20240607


def slice_of_pums(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    people = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).sort_values("pid").head(PERSONS).reset_index(drop=True)
    people["person"] = np.arange(1, PERSONS + 1)
    path = tmp_path / "pums_slice.csv"
    people.to_csv(path, index=False)
    return people, path


def slice_grant(world: World, path: Path) -> str:
    person = {"role": "quasi_identifier", "type": "int", "domain": list(range(1, PERSONS + 1))}
    meta = {**PUMS_META, "name": "pums_slice", "title": "PUMS, 150 persons", "columns": {**PUMS_META["columns"], "person": person}}
    uploaded = world.upload(world.steward, meta, path)
    assert uploaded.status_code == 201, uploaded.json
    requested = request_grant(world, [uploaded.json["id"]])
    assert requested.status_code == 201, requested.json
    dp = {"epsilon_total": EPSILON_TOTAL, "epsilon_per_job": 0.5, "delta_total": 0.0, "max_rows_per_unit": 1}
    policy = {"columns": {"pums_slice": {"person": "dimension", "married": "dimension"}}, "aggregates": ["count"], "job_kinds": ["query"]}
    approve(world, requested.json["id"], policy | {"dp": dp})
    return str(requested.json["id"])


def subset_sql(members: NDArray[np.bool_]) -> str:
    """The analyst's query for one subset: its text is built from whole numbers only."""
    persons = ", ".join(str(int(p)) for p in np.flatnonzero(members) + 1)
    return f"SELECT COUNT(*) AS n FROM pums_slice WHERE person IN ({persons}) AND married = 1"  # noqa: S608


def reconstruct(subsets: NDArray[np.bool_], answers: NDArray[np.float64]) -> NDArray[np.int_]:
    """Least squares for the bits x in subsets @ x ≈ answers, each rounded to 0 or 1 at 0.5."""
    estimate, *_ = np.linalg.lstsq(subsets.astype(np.float64), answers, rcond=None)
    return (estimate >= 0.5).astype(np.int_)


def released_answers(world: World, app: Flask, grant_id: str, subsets: NDArray[np.bool_]) -> tuple[NDArray[np.float64], Any]:
    """Submit every subset's count at ε = EPSILON_PER_QUERY, drain the queue with one worker, read the results."""
    job_ids = []
    for members in subsets:
        response = submit(world, grant_id, subset_sql(members), epsilon=EPSILON_PER_QUERY)
        assert response.status_code == 202, response.json
        job_ids.append(response.json["id"])
    assert run_worker(app, DuckDBEngine()) == len(job_ids)  # in process: 300 child processes would only add minutes
    results = [world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)) for job_id in job_ids]
    assert all(r.status_code == 200 for r in results), "every job is released"
    return np.array([r.json["rows"][0]["n"] for r in results], dtype=np.float64), results[0].json["summary"]["dp"]


@pytest.mark.slow
def test_linear_reconstruction_fails_on_dp_answers_and_succeeds_on_exact_ones(world: World, app: Flask, tmp_path: Path) -> None:
    """300 random-subset counts (twice as many as persons) of married persons, the grant's ε = 1.2 spread over them, then least squares.

    On the exact counts (pandas over the same rows and subsets) the attack recovers every bit; on the
    released ones it does no better than guessing "married" for everyone, plus 0.1. Each released count
    has discrete Laplace noise of scale 1 / 0.004 = 250, far above the √150 ≈ 12 the attack tolerates.
    That margin is what the test shows: ε = 1.2 itself bounds any attack's odds on a bit only by a
    factor e^(2 * 1.2) (changing a bit is removing a row and adding one), and a grant answering
    ``GROUP BY person`` at ε = 1.2 would let each bit be guessed right about 75% of the time.
    """
    people, path = slice_of_pums(tmp_path)
    assert people.groupby(["age", "sex", "educ", "race"]).size().eq(1).sum() == 144  # as the module docstring says
    grant_id = slice_grant(world, path)
    rng = np.random.default_rng(SEED)
    subsets = rng.random((QUERIES, PERSONS)) < 0.5
    married = people["married"].to_numpy()
    majority = max(married.mean(), 1 - married.mean())

    exact = np.array([people.loc[people["person"].isin(np.flatnonzero(s) + 1), "married"].eq(1).sum() for s in subsets], dtype=np.float64)
    assert (reconstruct(subsets, exact) == married).mean() >= 0.95  # the attack works

    noisy, stated = released_answers(world, app, grant_id, subsets)
    assert stated["epsilon"] == EPSILON_PER_QUERY
    assert stated["errors"]["n"][0]["scale"] == pytest.approx(1 / EPSILON_PER_QUERY)
    assert not np.array_equal(noisy, exact)
    assert (reconstruct(subsets, noisy) == married).mean() <= majority + 0.1  # and DP stops it

    refused = submit(world, grant_id, subset_sql(subsets[0]), epsilon=EPSILON_PER_QUERY)
    assert refused.status_code == 429, "the budget is spent: the attacker cannot ask for more"
    assert refused.json["error"]["details"]["limit"] == "grant"
