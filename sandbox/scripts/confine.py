"""The confinement of a script besides its namespaces: a seccomp filter, rlimits and a pids cgroup.

Standard library only (plus libseccomp's bindings): the launcher imports this module.

Seccomp. bubblewrap already unshares every namespace (no network device but a loopback that is down,
no host process to see), drops every capability and sets no-new-privileges; the filter narrows the
kernel's attack surface further and refuses, whatever the namespaces allow:

- sockets of any family but AF_UNIX (the network namespace has no route out; this holds even if it had);
- ptrace, process_vm_readv/writev, kcmp: reading or steering another process;
- keyctl, add_key, request_key: the kernel keyrings are not namespaced;
- mount and the new mount API, pivot_root, chroot, unshare, setns, clone with namespace flags and
  clone3 (answered ENOSYS so that libc falls back to clone, whose flags the filter can read);
- the terminal ioctls TIOCSTI (push input into a terminal) and TIOCLINUX, compared on the request's
  low 32 bits (the kernel truncates it to an int: a high bit set must not slip past);
- bpf, perf_event_open, userfaultfd, io_uring: frequent kernel-exploit entry points;
- module loading, kexec, reboot, swap, acct, syslog, quotactl, open_by_handle_at (reads a file by its
  handle, past the mount namespace).

Anything else is allowed: Python, NumPy, pandas and matplotlib need most of the rest. A syscall of
another architecture (32-bit entry points) kills the process (libseccomp's default for a foreign arch).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import resource
import shutil
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

DEBIAN_SECCOMP = Path("/usr/lib/python3/dist-packages")  # python3-seccomp, for the system's Python 3 ABI
PIDS_V1 = Path("/sys/fs/cgroup/pids")
MEMORY_V1 = Path("/sys/fs/cgroup/memory")
STALE_SECONDS = 60
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
LOW_32_BITS = 0xFFFFFFFF
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (and CLONE_NEWTIME 0x80)
CLONE_NEWTIME = 0x80

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "keyctl", "add_key", "request_key",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "vhangup",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "modify_ldt", "pidfd_getfd", "process_madvise", "move_pages", "migrate_pages", "quotactl_fd",
)  # fmt: skip


def libseccomp() -> ModuleType | None:
    """libseccomp's Python bindings from Debian's python3-seccomp (built for the same CPython ABI); None if absent.

    Loaded by path: they are a system package, not a distribution of the venv (``apt-get install python3-seccomp``).
    """
    for path in DEBIAN_SECCOMP.glob(f"seccomp.{sys.implementation.cache_tag}-*.so"):  # e.g. seccomp.cpython-311-x86_64-linux-gnu.so
        spec = importlib.util.spec_from_file_location("seccomp", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError:
            continue
        return module
    return None


def seccomp_program() -> int:
    """The filter compiled to BPF in a memfd, positioned at its start, for ``bwrap --seccomp FD``."""
    sc: Any = libseccomp()
    if sc is None:
        raise RuntimeError("libseccomp's Python bindings are not installed")
    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(defaction=sc.ALLOW)
    rules.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    rules.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    for request in (TIOCSTI, TIOCLINUX):
        rules.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, LOW_32_BITS, request))
    for flag in (*[1 << bit for bit in range(32) if NAMESPACE_FLAGS >> bit & 1], CLONE_NEWTIME):
        rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for name in DENIED:
        rules.add_rule(deny, name)
    fd = os.memfd_create("seccomp", 0)  # no MFD_CLOEXEC: bwrap inherits it
    with os.fdopen(os.dup(fd), "wb") as handle:
        rules.export_bpf(handle)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def unavailable() -> str:
    """Why scripts cannot be isolated here ("" when they can); said once, and every script is refused with it."""
    if sys.platform != "linux":
        return "script jobs need Linux (namespaces, seccomp, cgroups)"
    if shutil.which("bwrap") is None:
        return "script jobs need bubblewrap (apt-get install bubblewrap); this instance refuses them rather than run them unisolated"
    if libseccomp() is None:
        return "script jobs need libseccomp's Python bindings (apt-get install python3-seccomp)"
    if os.geteuid() != 0:
        return "script jobs need a worker running as root: it mounts each job's tmpfs and cgroup, then drops to uid 65534"
    if not (PIDS_V1 / "cgroup.procs").exists() or not os.access(PIDS_V1, os.W_OK):
        return "script jobs need a writable cgroup v1 pids controller at /sys/fs/cgroup/pids (cgroup v2 is not supported yet)"
    return ""


class PidsCgroup:
    """A pids cgroup (v1) of its own for one run: at most ``limit`` processes and threads, emptied with SIGKILL at the end."""

    def __init__(self, name: str, limit: int) -> None:
        self.path = PIDS_V1 / name
        self.path.mkdir(mode=0o755)
        (self.path / "pids.max").write_text(str(limit))

    def join(self) -> None:
        """Move the calling process into the cgroup (called in the child before it execs bubblewrap)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def members(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def close(self) -> None:
        """SIGKILL whatever is left (a process the script left behind), wait until the cgroup is empty, remove it."""
        for _ in range(200):
            left = self.members()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            os.sched_yield()
        with contextlib.suppress(OSError):  # still busy after 200 rounds: the next sweep removes it (``sweep``)
            self.path.rmdir()


class MemoryCgroup:
    """A memory cgroup (v1) for one run, a child of the launcher's own: all the sandbox's processes, and the tmpfs
    pages they write (/out, /tmp), share ``limit`` bytes; past it the kernel's OOM killer ends one of them.

    RLIMIT_AS bounds each process alone, and 64 processes of 4 GiB each are 256 GiB: this bounds their sum.
    Optional: where the controller is absent or not writable, ``create`` answers None and the rlimits remain.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.path.mkdir(mode=0o755)
        (self.path / "memory.limit_in_bytes").write_text(str(limit))
        swap = self.path / "memory.memsw.limit_in_bytes"
        if swap.exists():  # no escape into swap either (the sum of memory and swap is capped at the same bytes)
            swap.write_text(str(limit))

    @classmethod
    def create(cls, name: str, limit: int) -> MemoryCgroup | None:
        parent = own_cgroup("memory")
        if parent is None or not (MEMORY_V1 / parent / "cgroup.procs").exists() or not os.access(MEMORY_V1 / parent, os.W_OK):
            return None
        return cls(MEMORY_V1 / parent / name, limit)

    def join(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        """Remove the cgroup; its processes are gone by now (the pids cgroup was emptied first)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def own_cgroup(controller: str) -> str | None:
    """This process's cgroup (v1) for ``controller``, relative to the controller's root ("" for the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.lstrip("/")
    return None


def sweep() -> None:
    """Remove empty cgroups of earlier runs whose launcher was killed before it could.

    Only those made more than ``STALE_SECONDS`` ago: a run of another launcher creates its cgroups empty
    and fills them milliseconds later, and must not lose them in between.
    """
    memory = own_cgroup("memory")
    stale_memory = list((MEMORY_V1 / memory).glob("sandbox-script-*")) if memory is not None and MEMORY_V1.is_dir() else []
    for stale in [*PIDS_V1.glob("sandbox-script-*"), *stale_memory]:
        with contextlib.suppress(OSError):  # gone meanwhile, or not empty: a run in progress
            if stale.stat().st_ctime < time.time() - STALE_SECONDS:
                stale.rmdir()


def set_limits(memory_bytes: int, cpu_seconds: int, file_bytes: int, open_files: int) -> None:
    """rlimits of the sandbox (inherited by bubblewrap and the script): never above what this process has."""
    for which, value, hard in (
        (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
        (resource.RLIMIT_NOFILE, open_files, open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_MEMLOCK, 0, 0),
    ):
        _, current = resource.getrlimit(which)
        cap = current if current != resource.RLIM_INFINITY else hard
        resource.setrlimit(which, (min(value, cap), min(hard, cap)))
