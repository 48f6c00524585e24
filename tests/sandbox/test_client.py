"""The Python client against a real server (gunicorn) and a real worker process."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask

from sandbox.client import ApiError, Client, JobNotReleased
from tests.conftest import PUMS_POLICY, World, auth, data_file
from tests.processes import running
from tests.sandbox.test_dp_stats import DP_STATS_POLICY, stats_grant

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """gunicorn and one worker on the test's instance; yields the base URL. Both are stopped (killed if need be) at teardown."""
    env = {**os.environ, "SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    port = _free_port()
    log = Path(app.config["INSTANCE_PATH"]).parent / "server.log"
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"]
    with ExitStack() as stack:
        stack.enter_context(running(gunicorn, cwd=ROOT, env=env, log=log))
        stack.enter_context(running([sys.executable, "-m", "sandbox", "worker"], cwd=ROOT, env=env, log=log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def grant_id(world: World, grant: dict[str, Any]) -> str:
    response = world.client.post(
        f"/api/v1/grants/{grant['id']}/approve",
        headers=auth(world.steward),
        json={"policy": PUMS_POLICY, "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 200
    return str(grant["id"])


@pytest.mark.slow
def test_submit_and_wait_give_a_dataframe(server: str, world: World, grant_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = Client(server, world.analyst)
    job_id = client.submit_query(grant_id, "SELECT educ, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY educ ORDER BY educ")
    frame = client.wait(job_id, poll=0.05, timeout=60, progress=True)
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    counts = pums.groupby("educ").size()
    assert list(frame.columns) == ["educ", "n", "mean_income"]
    for _, row in frame.iterrows():
        if counts[row["educ"]] >= 10:
            assert row["n"] == counts[row["educ"]]
        else:
            assert pd.isna(row["n"])
    assert frame.attrs["summary"]["suppressed"] == 2 * int((counts < 10).sum())
    assert all(note["rule"] == "threshold" for note in frame.attrs["notes"])
    assert f"job {job_id[:8]}" in capsys.readouterr().err  # the progress bar


@pytest.mark.slow
def test_client_errors_carry_the_api_code(server: str, world: World, grant_id: str) -> None:
    client = Client(server, world.analyst)
    with pytest.raises(ApiError) as refused:
        client.submit_query(grant_id, "SELECT pid, income FROM pums")
    assert refused.value.status == 422
    assert refused.value.code == "policy_violation"
    blocked = client.submit_query(grant_id, "SELECT race, COUNT(*) AS n FROM pums WHERE race = 6 GROUP BY race")
    with pytest.raises(JobNotReleased) as not_released:
        client.wait(blocked, poll=0.05, timeout=60)
    assert not_released.value.code == "blocked"
    with pytest.raises(ApiError) as unknown:
        Client(server, "sbx_not-a-token").me()
    assert unknown.value.status == 401


@pytest.mark.slow
def test_client_states_epsilon_on_a_dp_grant(server: str, world: World, pums: dict[str, Any]) -> None:
    grant = {"id": stats_grant(world, pums["id"], DP_STATS_POLICY)}
    client = Client(server, world.analyst)
    with pytest.raises(ApiError) as missing:
        client.submit_query(grant["id"], "SELECT race, COUNT(*) AS n FROM pums GROUP BY race")
    assert missing.value.status == 400
    preview = client.dry_run(grant["id"], "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", rows=200, seed=1, epsilon=0.5)
    assert sorted(preview["race"]) == [1, 2, 3, 4, 5, 6]  # the declared domain, noised on mock rows
    counts = client.wait(client.submit_query(grant["id"], "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", epsilon=0.5), timeout=60)
    assert float(counts.attrs["summary"]["dp"]["epsilon"]) == 0.5
    spec = {"op": "histogram", "dataset": "pums", "column": "age", "bins": 4}
    histogram = client.wait(client.submit_stats(grant["id"], spec, epsilon=0.5))
    assert len(histogram) == 4
    with pytest.raises(ApiError) as spent:  # 0.5 + 0.5 of 1.0 are spent
        client.submit_query(grant["id"], "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", epsilon=0.5)
    assert (spent.value.status, spent.value.code) == (429, "budget_exhausted")
