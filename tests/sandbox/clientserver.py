"""A served instance for the client's tests (``tests/client/``): gunicorn and a worker on a fresh instance.

Run as ``python -m tests.sandbox.clientserver DIR`` (from the repository) by ``tests/client/conftest.py``,
with the Python of the full environment: the client's tests may run in a venv that holds only the
client's dependencies and cannot serve. It builds the test world on an SQLite instance under DIR,
prints one JSON line (the URL, the analyst's token, a query grant, a differentially private grant and a script grant),
then serves until its standard input closes, and stops gunicorn and the worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox import bootstrap as setup
from sandbox import create_app
from sandbox.db import get_db_of
from tests.conftest import PUMS_META, PUMS_POLICY, app_config, data_file, make_world, request_grant
from tests.sandbox.jobkit import approve
from tests.sandbox.test_dp_stats import DP_STATS_POLICY, stats_grant

ROOT = Path(__file__).resolve().parents[2]


def prepare(root: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """An initialised instance under ``root`` with the test world and PUMS; the server's environment and the grants."""
    database_url = f"sqlite:///{root / 'instance' / 'sandbox.db'}"
    (root / "instance").mkdir(parents=True, exist_ok=True)
    app = create_app(app_config(root, database_url))
    app.config["ADMIN_TOKEN"] = setup.initialise(app).admin_token
    world = make_world(app, app.test_client())
    pums = world.upload(world.steward, PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv"))
    assert pums.status_code == 201, pums.json
    grant_id = str(request_grant(world, [pums.json["id"]]).json["id"])
    approve(world, grant_id, PUMS_POLICY)
    dp_grant = stats_grant(world, pums.json["id"], DP_STATS_POLICY)
    script_grant = str(request_grant(world, [pums.json["id"]], ["script"]).json["id"])
    approve(world, script_grant, {**PUMS_POLICY, "job_kinds": ["script"]})
    get_db_of(app).engine.dispose()
    env = {"SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": database_url}
    return env, {"analyst": world.analyst, "grant": grant_id, "dp_grant": dp_grant, "script_grant": script_grant}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not listen on port {port} within {seconds} s")


def serve(root: Path) -> None:
    """Serve the prepared instance until standard input closes (the test session ended or died)."""
    extra_env, found = prepare(root)
    env = {**os.environ, **extra_env}
    port = _free_port()
    with open(root / "server.log", "ab") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
        worker = subprocess.Popen([sys.executable, "-m", "sandbox", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        _wait_for(port, 30)
        print(json.dumps({"url": f"http://127.0.0.1:{port}", **found}), flush=True)
        sys.stdin.read()
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
