"""Fixtures of the client's tests: a served instance, started by the Python that has the server's dependencies.

Imports nothing of the server: these tests also run in a venv holding only the client's dependencies
(``tests/test_client_standalone.py``), where ``SANDBOX_SERVER_PYTHON`` names the full environment's
Python that runs ``tests/sandbox/clientserver.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Deployment:
    """A running server and worker: its URL, the analyst's token, a query grant, a differentially private grant and a script grant."""

    url: str
    analyst: str
    grant: str
    dp_grant: str
    script_grant: str


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server per test session; it stops when its standard input closes, even if this process dies."""
    python = os.environ.get("SANDBOX_SERVER_PYTHON", sys.executable)
    root = tmp_path_factory.mktemp("served")
    log = root / "server.log"
    with open(log, "ab") as err:
        server = subprocess.Popen(
            [python, "-m", "tests.sandbox.clientserver", str(root)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line:
            pytest.fail(f"the test server did not start:\n{log.read_text()[-3000:]}")
        yield Deployment(**json.loads(line))
    finally:
        server.stdin.close()
        server.wait(30)
        server.stdout.close()
