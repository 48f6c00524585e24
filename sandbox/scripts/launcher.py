"""The trusted launcher of one script run: a process of its own, root, in a private mount namespace.

It reads a ``Request`` (pickled) on stdin and writes a ``Result`` on stdout. In between:

1. it leaves the host's mount namespace (``unshare(CLONE_NEWNS)``, every mount private), so that the
   tmpfs it mounts exist for it alone and vanish with it, even when it is SIGKILLed;
2. it mounts a tmpfs over its /tmp and writes there the inputs (Parquet: the plaintext lives in memory,
   never on disk), the script and its declared outputs; /tmp/out is a second tmpfs, sized and with a
   fixed number of inodes, owned by uid 65534; the pinned runtime (``sandbox.scripts.runtime``: a venv
   of its own, never the service's, and the Python installation it runs on) and ``inside/`` are
   bind-mounted read-only under /tmp/rt, where uid 65534 may reach them;
3. it runs bubblewrap as uid/gid 65534 (not as root mapped to 65534: a file readable only by root
   stays unreadable), inside a pids cgroup of its own and under rlimits, with every namespace
   unshared, a new session, no capability, user namespaces disabled inside, a cleared environment and
   the seccomp filter of ``confine``; /data and the runtime read-only, /out and /tmp size-limited;
4. it kills the sandbox from outside at the wall-clock limit (SIGKILL to every process of the cgroup),
   reads at most ``log_bytes`` of stdout and stderr, and re-reads /out as trusted code (``collect``).

Nothing secret reaches the sandbox: no key, no path of the instance, no environment variable; /proc
inside shows only the sandbox's own processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from sandbox.scripts import confine, runtime
from sandbox.scripts.collect import collect, file_names
from sandbox.scripts.protocol import OUTPUT_EXTENSIONS, Request, Result

NOBODY = 65534
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
INSIDE = Path(__file__).resolve().parent / "inside"
WORK = Path("/tmp")  # noqa: S108 (in the private namespace only: a tmpfs mounted over it)
ROOT_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32")
KILL_ROUNDS = 200
SANDBOX_SHM = "/dev/shm"  # noqa: S108 (the sandbox's own, sized: POSIX shared memory and semaphores)
SANDBOX_TMP = "/tmp"  # noqa: S108 (the sandbox's own /tmp: a size-limited tmpfs of its namespace)


def main() -> None:
    reply = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nothing else may write into the reply
    request: Request = pickle.load(sys.stdin.buffer)  # noqa: S301 (from the worker that started us)
    result = run(request)
    pickle.dump(result, reply)
    reply.close()


def run(request: Request) -> Result:
    refused = confine.unavailable() or runtime.missing()
    if refused:
        return Result(refused=refused)
    _private_mounts()
    confine.sweep()
    declared = file_names(request.outputs, OUTPUT_EXTENSIONS)
    _stage(request, declared)
    name = f"sandbox-script-{uuid.uuid4().hex}"
    cgroup = confine.PidsCgroup(name, request.limits.pids)
    memory = confine.MemoryCgroup.create(name, request.limits.memory_bytes)
    program = confine.seccomp_program()
    try:
        result = _sandbox(request, cgroup, memory, program)
    finally:
        cgroup.close()
        if memory is not None:
            memory.close()
        os.close(program)
    outputs, problems = collect(WORK / "out", declared, request.limits.out_bytes)
    return Result(
        exit_status=result.exit_status,
        timed_out=result.timed_out,
        seconds=result.seconds,
        stdout=result.stdout,
        stderr=result.stderr,
        outputs=outputs,
        problems=tuple(problems),
        cgroup=name,
    )


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _encoded(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(source: str | None, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc().mount(_encoded(source), _encoded(str(target)), _encoded(fstype), flags, _encoded(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def _private_mounts() -> None:
    """Leave the host's mount namespace: what this process mounts from now on, nobody else sees."""
    if _libc().unshare(CLONE_NEWNS) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWNS): {os.strerror(error)}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _stage(request: Request, declared: dict[str, str]) -> None:
    """The job's tmpfs: inputs, script and runtime views for bubblewrap to bind; /out empty and owned by the sandbox's uid."""
    size = sum(len(data) for data in request.inputs.values()) + len(request.code.encode()) + 2**20
    _mount("tmpfs", WORK, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    for folder in ("in", "job", "out", "rt"):
        _reachable_folder(WORK / folder)
    for name, data in request.inputs.items():
        (WORK / "in" / f"{name}.parquet").write_bytes(data)
    (WORK / "job" / "script.py").write_text(request.code, encoding="utf-8")
    (WORK / "job" / "outputs.json").write_text(_json(request.outputs, declared), encoding="utf-8")
    for path in (*(WORK / "in").iterdir(), *(WORK / "job").iterdir()):
        path.chmod(0o444)
    options = f"size={request.limits.out_bytes},nr_inodes=256,mode=0700,uid={NOBODY},gid={NOBODY}"
    _mount("tmpfs", WORK / "out", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
    for name, source in _runtime().items():
        target = WORK / "rt" / name
        _reachable_folder(target)
        _mount(str(source), target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _reachable_folder(path: Path) -> None:
    """A folder the sandbox's uid may traverse, whatever the umask the service runs with (``scripts/run.sh`` sets 077)."""
    path.mkdir()
    path.chmod(0o755)


def _json(outputs: object, declared: dict[str, str]) -> str:
    import json  # noqa: PLC0415 (small, and only here)

    return json.dumps({"types": outputs, "files": declared})


def _runtime() -> dict[str, Path]:
    """The pinned runtime's venv and its interpreter's installation, and ``inside/``: what the sandbox runs, read-only."""
    pinned = runtime.locate(runtime.RUNTIME)
    return {"python": pinned.base, "venv": pinned.prefix, "inside": INSIDE}


def _arguments(request: Request, program: int) -> list[str]:
    limits = request.limits
    args = [
        "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--new-session", "--die-with-parent",
        "--clearenv", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL", "--hostname", "sandbox",
    ]  # fmt: skip
    for folder in ROOT_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    pinned = runtime.locate(runtime.RUNTIME)
    args += ["--ro-bind", str(WORK / "rt" / "python"), str(pinned.base), "--ro-bind", str(WORK / "rt" / "venv"), str(pinned.prefix)]
    args += [
        "--ro-bind", str(WORK / "rt" / "inside"), "/runtime",
        "--ro-bind", str(WORK / "in"), "/data",
        "--ro-bind", str(WORK / "job"), "/job",
        "--bind", str(WORK / "out"), "/out",
        "--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", SANDBOX_TMP,
        "--proc", "/proc", "--dev", "/dev",
        # bubblewrap's /dev is a writable tmpfs of half the RAM: /dev/shm gets a sized one of its own, /dev turns read-only.
        "--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", SANDBOX_SHM, "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", SANDBOX_TMP,
        "--setenv", "HOME", SANDBOX_TMP, "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "MPLBACKEND", "Agg", "--setenv", "MPLCONFIGDIR", SANDBOX_TMP, "--setenv", "OMP_NUM_THREADS", "1",
        "--setenv", "OPENBLAS_NUM_THREADS", "1",
        "--seccomp", str(program),
        "--", str(pinned.executable), "-I", "-B", "/runtime/bootstrap.py",
    ]  # fmt: skip
    return args


class _Ended:
    def __init__(self, exit_status: int | None, timed_out: bool, seconds: float, stdout: str, stderr: str) -> None:
        self.exit_status, self.timed_out, self.seconds, self.stdout, self.stderr = exit_status, timed_out, seconds, stdout, stderr


def _sandbox(request: Request, cgroup: confine.PidsCgroup, memory: confine.MemoryCgroup | None, program: int) -> _Ended:
    limits = request.limits

    def confined() -> None:  # in the child, before exec: cgroups, rlimits, then uid/gid 65534 for good
        cgroup.join()
        if memory is not None:
            memory.join()
        confine.set_limits(limits.memory_bytes, limits.cpu_seconds, limits.file_bytes, limits.open_files)
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)

    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (a fixed program with arguments we build)
        _arguments(request, program),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
        pass_fds=(program,),
        preexec_fn=confined,  # noqa: PLW1509 (the launcher is single-threaded here)
        cwd="/",
    )
    assert process.stdout is not None
    assert process.stderr is not None
    logs: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=_drain, args=(stream, limits.log_bytes, logs, key), daemon=True)
        for stream, key in ((process.stdout, "stdout"), (process.stderr, "stderr"))
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    seconds = time.monotonic() - started
    if process.poll() is None or cgroup.members():
        _kill_all(process, cgroup)
    for reader in readers:
        reader.join(5)
    stdout, stderr = (logs.get(key, b"").decode("utf-8", "replace") for key in ("stdout", "stderr"))
    return _Ended(None if timed_out else process.returncode, timed_out, seconds, stdout, stderr)


def _kill_all(process: subprocess.Popen[bytes], cgroup: confine.PidsCgroup) -> None:
    """SIGKILL bubblewrap and every process of the cgroup (the sandbox's init takes its namespace down with it)."""
    for _ in range(KILL_ROUNDS):
        for pid in [process.pid, *cgroup.members()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        if not cgroup.members():
            return


def _drain(stream: IO[bytes], keep: int, logs: dict[str, bytes], key: str) -> None:
    """Read ``stream`` to its end, keeping its first ``keep`` bytes (a script that prints forever never blocks)."""
    kept = bytearray()
    while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
        if len(kept) < keep:
            kept += chunk[: keep - len(kept)]
    logs[key] = bytes(kept)


if __name__ == "__main__":
    main()
