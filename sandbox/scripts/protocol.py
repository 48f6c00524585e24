"""What the worker hands the launcher and what the launcher hands back (pickled over its stdin and stdout).

Both sides are trusted code of this project: the analyst's script never sees these values. The
result carries the outputs as bytes the launcher re-read safely (``collect``); the worker parses and
re-serialises them (``jobs.script.outputs``) before anyone sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

OUTPUT_EXTENSIONS = {"table": "json", "text": "txt", "figure": "png"}  # the file name of an output in /out: <name>.<ext>


@dataclass(frozen=True)
class Confinement:
    """What one script run may take.

    ``wall_seconds`` is enforced from outside (the launcher SIGKILLs the sandbox); ``cpu_seconds``,
    ``memory_bytes`` (address space per process), ``file_bytes`` (largest file written) and
    ``open_files`` are rlimits; ``pids`` is the pids cgroup's limit (root and user namespaces ignore
    RLIMIT_NPROC); ``out_bytes`` and ``tmp_bytes`` size the tmpfs of /out and /tmp; ``log_bytes`` is
    how much of stdout and of stderr is kept (the rest is read and dropped).
    """

    wall_seconds: float
    memory_bytes: int
    cpu_seconds: int
    out_bytes: int = 64 * 2**20
    tmp_bytes: int = 256 * 2**20
    file_bytes: int = 64 * 2**20
    open_files: int = 256
    pids: int = 64
    log_bytes: int = 64 * 2**10


@dataclass(frozen=True)
class Request:
    """A script, its inputs as Parquet bytes by dataset name, and its declared outputs (name -> type)."""

    code: str
    inputs: Mapping[str, bytes]
    outputs: Mapping[str, str]
    limits: Confinement

    def __repr__(self) -> str:  # never print the data
        return f"Request(inputs={sorted(self.inputs)}, outputs={dict(self.outputs)})"


@dataclass(frozen=True)
class Result:
    """How the sandbox ended, what it printed (capped), and the outputs it left, re-read by trusted code.

    ``refused`` says why the script was not run at all (isolation unavailable). ``problems`` lists what
    was wrong with /out (undeclared, missing, not a regular file, too large): any problem fails the run.
    """

    refused: str = ""
    exit_status: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    outputs: Mapping[str, bytes] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    cgroup: str = ""  # the run's cgroup name (removed when the run ends), for operators and tests

    @property
    def succeeded(self) -> bool:
        return not self.refused and not self.timed_out and self.exit_status == 0 and not self.problems
