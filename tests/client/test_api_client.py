"""The Python client against a real server (gunicorn) and a real worker process."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from sandbox.client import ApiError, Client, JobNotReleased
from tests.client.conftest import Deployment
from tests.datafiles import data_file

# The served instance is SQLite whatever the run's database: the client is what these tests check.
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def test_submit_and_wait_give_a_dataframe(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    client = Client(deployment.url, deployment.analyst)
    job_id = client.submit_query(
        deployment.grant, "SELECT educ, COUNT(*) AS n, AVG(income) AS mean_income FROM pums GROUP BY educ ORDER BY educ"
    )
    frame = client.wait(job_id, poll=0.05, timeout=60, progress=True)
    pums = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv"))
    counts = pums.groupby("educ").size()
    assert list(frame.columns) == ["educ", "n", "mean_income"]
    for _, row in frame.iterrows():
        if counts[row["educ"]] >= 10:
            assert row["n"] == counts[row["educ"]]
        else:
            assert pd.isna(row["n"])
    assert frame.attrs["summary"]["withheld"] == 2 * int((counts < 10).sum())
    assert all(note["status"] == "withheld" for note in frame.attrs["notes"])
    assert f"job {job_id[:8]}" in capsys.readouterr().err  # the progress bar


def test_chinese_aliases_reach_the_dataframe_as_written(deployment: Deployment) -> None:
    client = Client(deployment.url, deployment.analyst)
    sql = 'SELECT "educ" AS "教育程度", COUNT(*) AS "人数 (n)" FROM "PUMS" GROUP BY "EDUC" ORDER BY "教育程度"'
    frame = client.wait(client.submit_query(deployment.grant, sql), poll=0.05, timeout=60, progress=False)
    assert list(frame.columns) == ["教育程度", "人数 (n)"]
    counts = pd.read_csv(data_file("smartnoise-sdk/PUMS_pid.csv")).groupby("educ").size()
    assert list(frame["教育程度"]) == sorted(counts.index)
    assert set(client.dry_run(deployment.grant, sql, rows=200, seed=1).columns) == {"教育程度", "人数 (n)"}


def test_client_errors_carry_the_api_code(deployment: Deployment) -> None:
    client = Client(deployment.url, deployment.analyst)
    with pytest.raises(ApiError) as refused:
        client.submit_query(deployment.grant, "SELECT pid, income FROM pums")
    assert refused.value.status == 422
    assert refused.value.code == "policy_violation"
    blocked = client.submit_query(deployment.grant, "SELECT race, COUNT(*) AS n FROM pums WHERE race = 6 GROUP BY race")
    with pytest.raises(JobNotReleased) as not_released:
        client.wait(blocked, poll=0.05, timeout=60)
    assert not_released.value.code == "blocked"
    with pytest.raises(ApiError) as unknown:
        Client(deployment.url, "sbx_not-a-token").me()
    assert unknown.value.status == 401


def test_client_states_epsilon_on_a_dp_grant(deployment: Deployment) -> None:
    client, grant = Client(deployment.url, deployment.analyst), deployment.dp_grant
    with pytest.raises(ApiError) as missing:
        client.submit_query(grant, "SELECT race, COUNT(*) AS n FROM pums GROUP BY race")
    assert missing.value.status == 400
    preview = client.dry_run(grant, "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", rows=200, seed=1, epsilon=0.5)
    assert sorted(preview["race"]) == [1, 2, 3, 4, 5, 6]  # the declared domain, noised on mock rows
    assert list(preview.columns) == ["race", "n"]  # the query's order, not the JSON keys' sorted order
    counts = client.wait(client.submit_query(grant, "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", epsilon=0.5), timeout=60)
    assert float(counts.attrs["summary"]["dp"]["epsilon"]) == 0.5
    spec = {"op": "histogram", "dataset": "pums", "column": "age", "bins": 4}
    histogram = client.wait(client.submit_stats(grant, spec, epsilon=0.5))
    assert len(histogram) == 4
    with pytest.raises(ApiError) as spent:  # 0.5 + 0.5 of 1.0 are spent
        client.submit_query(grant, "SELECT race, COUNT(*) AS n FROM pums GROUP BY race", epsilon=0.5)
    assert (spent.value.status, spent.value.code) == (429, "budget_exhausted")


def test_a_script_is_dry_run_then_submitted_and_held(deployment: Deployment) -> None:
    client = Client(deployment.url, deployment.analyst)
    code = "import sandbox_io\ndf = sandbox_io.read('pums')\nprint(len(df))\nsandbox_io.emit('n', str(len(df)))"
    try:
        done = client.dry_run_script(deployment.script_grant, code, ["pums"], {"n": "text"}, rows=50, seed=1)
    except ApiError as exc:  # a host that cannot isolate scripts refuses them, saying why
        if exc.code != "scripts_unavailable":
            raise
        pytest.skip(exc.message)
    assert done["outputs"] == {"n": {"type": "text", "text": "50"}}
    assert (done["run"]["exit_status"], done["run"]["stdout"]) == (0, "50\n")
    # The analyst sees a script job running until its time limit and the launcher's grace (35 s) have passed.
    job_id = client.submit_script(deployment.script_grant, code, ["pums"], {"n": "text"}, timeout_seconds=1)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["status"] not in ("queued", "running", "checking"):
            break
        assert (job["reason"], job["run_seconds"]) == (None, None)
        time.sleep(0.5)
    assert job["status"] == "held"  # every real script output waits for the reviewers
    assert job["run_seconds"] is None
