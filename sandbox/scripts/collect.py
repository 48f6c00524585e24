"""Re-reading /out by trusted code, after the sandbox is gone: only declared names, only regular files.

The known escape is a link: a script that leaves ``/out/table.json`` as a symlink (or a hard link) to a
file it may not export, hoping that the trusted reader, which runs with more rights, follows it. So
each entry is ``lstat``-ed and must be a regular file with one link; it is opened with ``O_NOFOLLOW``
(and ``O_NONBLOCK``, so that nothing blocks on a FIFO that appeared since) and ``fstat``-ed again to be
sure it is the file that was checked; at most ``cap`` bytes are read. Anything else -- an undeclared
name, a directory, a device, a FIFO, a socket, a missing or oversized output -- is a problem, and any
problem fails the run. Standard library only: the launcher imports this module.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

EVIDENCE = ".evidence"  # a table's optional evidence (a ``sandbox_io`` helper's): ``<name>.evidence`` in ``<name>.evidence.json``
MAX_ENTRIES = 256  # /out's tmpfs has as many inodes; the listing stops here regardless


def collect(out: Path, declared: Mapping[str, str], cap: int) -> tuple[dict[str, bytes], list[str]]:
    """The declared outputs found in ``out`` (name -> bytes), and the problems; ``declared`` maps a name to its file name."""
    files = {filename: name for name, filename in declared.items()}
    found: dict[str, bytes] = {}
    problems: list[str] = []
    with os.scandir(out) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_ENTRIES:
                problems.append(f"more than {MAX_ENTRIES} entries in /out")
                break
            name = files.get(entry.name)
            if name is None:
                problems.append(f"undeclared output {entry.name[:100]!r}")
                continue
            data, problem = _read(out / entry.name, cap)
            if problem:
                problems.append(f"output {name!r}: {problem}")
            else:
                found[name] = data
    missing = [name for name in declared if name not in found and not _named(problems, name) and not name.endswith(EVIDENCE)]
    problems.extend(f"output {name!r} was declared but not emitted" for name in missing)
    return found, problems


def _named(problems: list[str], name: str) -> bool:
    return any(p.startswith(f"output {name!r}:") for p in problems)


def _read(path: Path, cap: int) -> tuple[bytes, str]:
    """The file's bytes, or a problem; never follows a link, never blocks, never reads past ``cap``."""
    checked = os.lstat(path)
    problem = _unsafe(checked, cap)
    if problem:
        return b"", problem
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return b"", f"cannot be opened ({type(exc).__name__})"
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino) or not stat.S_ISREG(opened.st_mode):
            return b"", "changed while it was read"
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            return b"", f"larger than {cap} bytes"
        return b"".join(chunks), ""
    finally:
        os.close(fd)


def _unsafe(checked: os.stat_result, cap: int) -> str:
    if not stat.S_ISREG(checked.st_mode):
        return f"not a regular file ({_kind(checked.st_mode)})"
    if checked.st_nlink != 1:
        return "a hard link (more than one name for the file)"
    if checked.st_size > cap:
        return f"larger than {cap} bytes"
    return ""


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return kind
    return "unknown"


def file_names(outputs: Mapping[str, str], extensions: Mapping[str, str]) -> dict[str, str]:
    """Each declared output's file name in /out, ``<name>.<extension of its type>``; and each table's optional evidence."""
    names = {name: f"{name}.{extensions[kind]}" for name, kind in outputs.items()}
    evidence = {f"{name}{EVIDENCE}": f"{name}{EVIDENCE}.json" for name, kind in outputs.items() if kind == "table"}
    return names | evidence
