"""Child processes of the tests (gunicorn, workers, the custodian): each in its own process group, always stopped.

A fixture that only calls ``terminate()`` and ``wait()`` leaks a process that ignores SIGTERM or
hangs in its shutdown (the wait raises, nothing kills it), and leaves the children of a process it
killed (gunicorn's workers, a worker's job executor) running. ``running`` starts the command in a
new session, so that it leads a process group of its own, and stops that whole group on the way out
of the ``with`` block, whether the body returned or raised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

GRACE_SECONDS = 10.0


def start(command: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new process group; its output goes to ``log`` (appended)."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdout=out, stderr=out, start_new_session=True)


def stop(process: subprocess.Popen[bytes], grace: float = GRACE_SECONDS) -> int:
    """SIGTERM the process's group, wait up to ``grace`` seconds, then SIGKILL the group; returns the exit status.

    The final SIGKILL goes to the group while its leader is still unreaped (a zombie keeps its pid,
    hence the group id, from being reused), so it reaches only what this process started: children
    that outlived a leader that did stop, or a leader that would not. Safe to call more than once.
    """
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        _exited(process.pid, grace)
    _signal_group(process.pid, signal.SIGKILL)
    return process.wait(grace)


@contextlib.contextmanager
def running(command: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``start`` the command; ``stop`` it and its group when the block ends, however it ends."""
    process = start(command, env=env, log=log, cwd=cwd)
    try:
        yield process
    finally:
        stop(process)


def _exited(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it (``WNOWAIT``); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if status is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
