"""The tests' process helper stops what it started: a child that ignores SIGTERM, and its own children too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import running, start, stop

# A child that ignores SIGTERM and starts a grandchild that ignores it as well, then prints its pid.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(grandchild.pid, flush=True)
time.sleep(600)
"""
POLITE = "import time; print(0, flush=True); time.sleep(600)"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _printed_pid(log: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text().strip() if log.exists() else ""
        if text:
            return int(text.splitlines()[0])
        time.sleep(0.02)
    pytest.fail("the child printed nothing")


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_child_that_ignores_sigterm_is_killed_with_its_children(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    process = start([sys.executable, "-c", STUBBORN], env=os.environ, log=log)
    grandchild = _printed_pid(log)
    began = time.monotonic()
    status = stop(process, grace=0.5)
    assert status == -signal.SIGKILL
    assert time.monotonic() - began < 5
    assert not _alive(process.pid)
    assert _gone(grandchild), "the grandchild survived"


def test_a_polite_child_stops_at_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    process = start([sys.executable, "-c", POLITE], env=os.environ, log=log)
    _printed_pid(log)
    assert stop(process, grace=5) == -signal.SIGTERM
    assert stop(process, grace=5) == -signal.SIGTERM  # again: nothing to do, no error


def test_running_stops_the_child_when_the_block_raises(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    started: list[subprocess.Popen[bytes]] = []

    def failing_test() -> None:
        with running([sys.executable, "-c", POLITE], env=os.environ, log=log) as process:
            started.append(process)
            _printed_pid(log)
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError):
        failing_test()
    assert started[0].returncode == -signal.SIGTERM
