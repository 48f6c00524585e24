"""The isolation of script jobs, run directly (``sandbox.scripts.isolation.run``): each escape is contained.

Every case is a script that tries one way out and a check on what came back. The same escapes run
through the API with a worker in ``test_script_jobs``; here each one is cheap enough to be a case of
its own. Skipped, saying why, on a host that cannot isolate scripts (the instance refuses them there).
"""

from __future__ import annotations

import io
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.scripts import confine, runtime
from sandbox.scripts.isolation import run, unavailable
from sandbox.scripts.protocol import Confinement, Request, Result

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "isolation available")

SECRET = "s3cr3t-value-that-must-not-leak"


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


LIMITS_A = Confinement(wall_seconds=20, memory_bytes=4 * 2**30, cpu_seconds=21)
INPUTS = {"pums": parquet(pa.table({"age": [30, 40, 50, 60], "sex": [1, 2, 1, 2], "income": [10.0, 20.0, 30.0, 40.0]}))}


def script(code: str, outputs: dict[str, str] | None = None, wall: float = 20, memory: int = 4 * 2**30, **limits: int) -> Result:
    confinement = Confinement(wall_seconds=wall, memory_bytes=memory, cpu_seconds=int(wall) + 1, **limits)
    return run(Request(textwrap.dedent(code), INPUTS, outputs or {}, confinement))


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on the host's loopback, like the API's own, that the script must not reach."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_a_script_reads_its_data_and_emits_its_outputs() -> None:
    done = script(
        """
        import sandbox_io
        df = sandbox_io.read("pums")
        print(sorted(df.columns))
        sandbox_io.emit("by_sex", df.groupby("sex").income.mean())
        sandbox_io.emit("note", "rows: %d" % len(df))
        """,
        {"by_sex": "table", "note": "text"},
    )
    assert done.succeeded, done
    assert done.stdout.strip() == "['age', 'income', 'sex']"
    assert done.outputs["note"] == b"rows: 4"
    assert b'"columns":["sex","income"]' in done.outputs["by_sex"]


def test_a_script_runs_under_the_private_umask_the_service_runs_with() -> None:
    """``scripts/run.sh`` (``make run``) serves with umask 077 for its own files: the run's folders must stay reachable
    by the sandbox's uid regardless (they were made 0700, and bubblewrap could not bind the runtime)."""
    before = os.umask(0o077)
    try:
        done = script('import sandbox_io\nsandbox_io.emit("note", "rows: %d" % len(sandbox_io.read("pums")))', {"note": "text"})
    finally:
        os.umask(before)
    assert done.succeeded, done
    assert done.outputs["note"] == b"rows: 4"


def test_a_script_fits_a_scikit_learn_model_in_the_pinned_runtime_not_the_services_venv() -> None:
    done = script(
        """
        import importlib.util, sys
        import sandbox_io
        from sklearn.linear_model import LinearRegression
        df = sandbox_io.read("pums")
        model = LinearRegression().fit(df[["age"]], df["income"])
        print(round(float(model.coef_[0]), 6), round(float(model.intercept_), 6))
        print(sys.prefix)
        print([name for name in ("flask", "sqlalchemy", "Crypto", "sandbox") if importlib.util.find_spec(name)])
        """
    )
    assert done.succeeded, done
    fitted, prefix, service_modules = done.stdout.strip().splitlines()
    assert fitted == "1.0 -20.0"  # income = age - 20 on the four rows
    assert prefix == str(runtime.locate(runtime.RUNTIME).prefix)  # the pinned runtime's venv
    assert service_modules == "[]"  # nothing of the service's venv or code is importable


def test_the_sandbox_runs_as_nobody_without_capabilities_environment_or_host_processes() -> None:
    os.environ["SANDBOX_TEST_SECRET"] = SECRET  # in the worker's environment: nothing of it may be seen inside
    try:
        done = script(
            """
            import os
            status = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if ":" in l and len(l.split()) > 1}
            print(os.getuid(), os.getgid(), status["CapEff"], status["NoNewPrivs"], status["Seccomp"])
            print(sorted(os.environ))
            pids = [p for p in os.listdir("/proc") if p.isdigit()]
            print(len(pids) <= 3)
            for pid in pids:
                for name in ("environ", "cmdline"):
                    try:
                        print(open(f"/proc/{pid}/{name}", "rb").read())
                    except OSError as exc:
                        print(type(exc).__name__)
            """
        )
    finally:
        del os.environ["SANDBOX_TEST_SECRET"]
    assert done.succeeded, done
    lines = done.stdout.splitlines()
    assert lines[0] == "65534 65534 0000000000000000 1 2"  # uid, gid, no capability, no-new-privileges, seccomp filter mode
    assert (
        lines[1] == "['HOME', 'LANG', 'MPLBACKEND', 'MPLCONFIGDIR', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', 'PWD']"
    )  # PWD: bubblewrap's --chdir
    assert lines[2] == "True"
    assert SECRET not in done.stdout


ESCAPES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "network-public": (
        "import socket\ns = socket.socket()\ns.settimeout(3)\ns.connect(('1.1.1.1', 80))",
        lambda err: "Address family not supported" in err,
    ),
    "network-ipv6": ("import socket\nsocket.socket(socket.AF_INET6)", lambda err: "Address family not supported" in err),
    "network-netlink": (
        "import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
        lambda err: "Address family not supported" in err,
    ),
    "dns": ("import socket\nsocket.getaddrinfo('example.com', 80)", lambda err: "gaierror" in err or "Address family" in err),
    "read-etc-shadow": ("print(open('/etc/shadow').read())", lambda err: "FileNotFoundError" in err),
    "write-outside-out": ("open('/escape', 'w').write('x')", lambda err: "Read-only file system" in err),
    "write-into-dev": ("open('/dev/escape', 'w').write('x')", lambda err: "Read-only file system" in err),
    "write-into-data": (
        "open('/data/pums.parquet', 'a').write('x')",
        lambda err: "Read-only file system" in err or "Permission denied" in err,
    ),
    "write-into-runtime": (
        "open('/runtime/sandbox_io.py', 'a').write('x')",
        lambda err: "Read-only file system" in err or "Permission denied" in err,
    ),
    "tiocsti": (
        "import fcntl, termios\nfcntl.ioctl(0, termios.TIOCSTI, b'x')",
        lambda err: "Operation not permitted" in err,
    ),
    "tiocsti-high-bits": (  # the request's high 32 bits set: the kernel truncates it; the filter compares the low 32
        "import fcntl, termios\nfcntl.ioctl(0, termios.TIOCSTI | (1 << 32), b'x')",
        lambda err: "Operation not permitted" in err,
    ),
    "ptrace": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.ptrace(16, 1, 0, 0) == -1 and ctypes.get_errno() == 1, 'ptrace attached'\nraise SystemExit('EPERM')",
        lambda err: "EPERM" in err,
    ),
    "keyctl": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.syscall(250, 0, 0, 0, 0) == -1 and ctypes.get_errno() == 1, 'keyctl ran'\nraise SystemExit('EPERM')",
        lambda err: "EPERM" in err,
    ),
    "user-namespace": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.unshare(0x10000000) == -1, 'a user namespace was made'\nraise SystemExit('refused')",
        lambda err: "refused" in err,
    ),
    "mount": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == -1, 'mounted'\nraise SystemExit('refused')",
        lambda err: "refused" in err,
    ),
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_an_escape_is_refused(name: str) -> None:
    code, refused = ESCAPES[name]
    done = script(code)
    assert done.exit_status != 0, done
    assert refused(done.stderr), done.stderr


def test_the_hosts_loopback_is_out_of_reach(listening: int) -> None:
    done = script(f"import socket\nsocket.create_connection(('127.0.0.1', {listening}), timeout=3)")
    assert done.exit_status != 0
    assert "Address family not supported" in done.stderr


def test_host_files_such_as_the_master_key_are_not_in_the_sandbox(tmp_path: Path) -> None:
    key = tmp_path / "instance" / "master.key"
    key.parent.mkdir()
    key.write_text(SECRET)
    done = script(f"print(open({str(key)!r}).read())")
    assert done.exit_status != 0
    assert "FileNotFoundError" in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        pytest.param("import os\nos.symlink('/data/pums.parquet', '/out/t.json')", "a symlink", id="symlink-to-input"),
        pytest.param("import os\nos.symlink('/etc/passwd', '/out/t.json')", "a symlink", id="symlink-to-host-file"),
        pytest.param("import os\nopen('/out/x', 'w').write('1')\nos.link('/out/x', '/out/t.json')", "hard link", id="hard-link"),
        pytest.param("import os\nos.mkfifo('/out/t.json')", "a FIFO", id="fifo"),
        pytest.param("import os\nos.mkdir('/out/t.json')", "a directory", id="directory"),
        pytest.param("open('/out/other.csv', 'w').write('1')", "undeclared output 'other.csv'", id="undeclared"),
        pytest.param("pass", "declared but not emitted", id="missing"),
    ],
)
def test_out_is_reread_as_regular_declared_files_only(code: str, problem: str) -> None:
    done = script(code, {"t": "table"})
    assert not done.succeeded
    assert any(problem in found for found in done.problems), done.problems
    assert "t" not in done.outputs


def test_a_hard_link_to_an_input_cannot_be_made() -> None:
    done = script("import os\nos.link('/data/pums.parquet', '/out/t.json')", {"t": "table"})
    assert done.exit_status != 0
    assert "Invalid cross-device link" in done.stderr or "Operation not permitted" in done.stderr


@pytest.mark.slow
def test_a_huge_output_is_cut_by_the_size_of_out() -> None:
    done = script(
        "f = open('/out/t.json', 'wb')\nblock = b'x' * 2**20\nfor _ in range(1024):\n    f.write(block)\n",
        {"t": "table"},
        out_bytes=8 * 2**20,
        file_bytes=16 * 2**20,
    )
    assert done.exit_status != 0
    assert "No space left on device" in done.stderr
    assert len(done.outputs.get("t", b"")) <= 8 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_the_writable_tmpfs_are_size_limited(folder: str) -> None:
    done = script(
        f"block = b'x' * 2**20\nfor i in range(64):\n    with open('{folder}/f%d' % i, 'wb') as f:\n        for _ in range(16):\n"
        "            f.write(block)\n",
        tmp_bytes=128 * 2**20,
    )
    assert done.exit_status != 0
    assert "No space left on device" in done.stderr


@pytest.mark.slow
def test_a_fork_bomb_stops_at_the_pids_limit_and_leaves_nothing_behind() -> None:
    done = script(
        """
        import os, time
        made = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
        except OSError as exc:
            print("stopped after", made, type(exc).__name__)
        """,
        wall=15,
        pids=16,
    )
    assert "stopped after" in done.stdout, done
    assert int(done.stdout.split()[2]) < 16
    assert done.cgroup
    assert not (confine.PIDS_V1 / done.cgroup).exists()  # the cgroup was emptied and removed


@pytest.mark.slow
def test_a_memory_bomb_fails_at_the_address_space_limit() -> None:
    done = script("x = bytearray(8 * 2**30)", memory=2 * 2**30)
    assert done.exit_status != 0
    assert "MemoryError" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(600)"], ids=["cpu-spin", "sleep"])
def test_a_script_past_its_wall_clock_is_killed_from_outside(code: str) -> None:
    done = script(code, wall=2)
    assert done.timed_out
    assert done.exit_status is None
    assert done.seconds < 6
    assert done.cgroup
    assert not (confine.PIDS_V1 / done.cgroup).exists()


@pytest.mark.slow
def test_a_process_left_behind_is_killed() -> None:
    done = script("import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)\nprint('left')")
    assert done.succeeded, done
    assert done.cgroup
    assert not (confine.PIDS_V1 / done.cgroup).exists()


@pytest.mark.slow
@pytest.mark.skipif(confine.own_cgroup("memory") is None, reason="no memory cgroup v1")
def test_processes_together_stay_within_the_memory_limit() -> None:
    """Each process is under RLIMIT_AS; four of them together pass the memory cgroup's limit and one is killed."""
    done = script(
        """
        import os, time
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (600 * 2**20)  # touched: resident, not only reserved
                time.sleep(3)
                os._exit(0)
            children.append(pid)
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        print(sorted(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in statuses))
        """,
        memory=1536 * 2**20,
    )
    assert done.exit_status == 0, done
    killed = done.stdout.strip()
    assert killed.startswith("[False, "), killed  # some ran to their end ...
    assert killed.endswith("True]"), killed  # ... and at least one was killed by the cgroup's OOM killer


@pytest.mark.slow
def test_a_running_jobs_data_is_seen_neither_by_the_host_nor_by_another_job() -> None:
    """Each launcher's tmpfs lives in its own mount namespace; each sandbox sees its own processes only."""
    marker = "marker-of-job-a-7f3c"
    first = threading.Thread(
        target=lambda: results.append(
            run(Request(f"import time\nopen('/tmp/{marker}', 'w').write('x')\ntime.sleep(4)", INPUTS, {}, LIMITS_A))
        )
    )
    results: list[Result] = []
    first.start()
    time.sleep(2)
    on_host = [line for line in Path("/proc/self/mounts").read_text().splitlines() if "/out" in line or marker in line]
    second = script(
        f"""
        import os
        print(sorted(p for p in os.listdir('/proc') if p.isdigit()))
        for root, dirs, files in os.walk('/'):
            if root.startswith(('/proc', '/sys', '/usr')):
                dirs[:] = []
                continue
            if {marker!r} in files:
                print('found', root)
        """
    )
    first.join()
    assert on_host == []  # the host's mount table has none of the job's tmpfs
    assert results[0].exit_status == 0, results[0]
    assert second.exit_status == 0, second
    assert "found" not in second.stdout
    assert second.stdout.splitlines()[0] in ("['1', '2']", "['1', '2', '3']")  # bubblewrap's init and the script (and its child)
