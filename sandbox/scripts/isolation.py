"""The worker's side of a script run: start the trusted launcher in a process of its own and wait for its result.

The launcher (``sandbox.scripts.launcher``) runs as a fresh interpreter (``python -I``: no environment
variable, no user site, no current directory on its path) started from this one, so it needs no
import of the worker's state and its private mount namespace ends with it. It receives the request
on stdin and answers on stdout; it kills the sandbox itself at the wall clock, and is killed here if
it has not answered ``LAUNCHER_GRACE_SECONDS`` later (its sandbox dies with it: ``--die-with-parent``).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from sandbox.scripts import confine, runtime
from sandbox.scripts.protocol import Request, Result

PROJECT = Path(__file__).resolve().parents[2]
LAUNCHER_GRACE_SECONDS = 30  # set-up (tmpfs, cgroup, seccomp) and the re-reading of /out, beyond the wall clock
BOOT = f"import sys; sys.path.insert(0, {str(PROJECT)!r}); from sandbox.scripts.launcher import main; main()"


class IsolationFailed(RuntimeError):
    """The launcher itself failed (not the script): the run has no result."""


def unavailable() -> str:
    """Why this host cannot isolate scripts ("" if it can), or why their pinned runtime cannot be used: script jobs are
    refused with it, never run unisolated nor on the service's venv."""
    return confine.unavailable() or runtime.missing()


def run(request: Request) -> Result:
    """Run ``request`` isolated; a ``Result`` with ``refused`` set when this host cannot isolate scripts."""
    try:
        done = subprocess.run(  # noqa: S603 (this interpreter, a fixed program)
            [sys.executable, "-I", "-c", BOOT],
            input=pickle.dumps(request),
            capture_output=True,
            timeout=request.limits.wall_seconds + LAUNCHER_GRACE_SECONDS,
            check=False,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        )
    except subprocess.TimeoutExpired:
        raise IsolationFailed("the script launcher did not answer in time") from None
    if done.returncode != 0 or not done.stdout:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise IsolationFailed(f"the script launcher failed (exit {done.returncode}): {last[0][:300]}")
    result: Result = pickle.loads(done.stdout)  # noqa: S301 (our own launcher's answer)
    return result
