"""The client stands alone: in a venv holding only requirements-client.txt (and pytest), from a directory
outside the repository, ``sandbox.client`` imports without any of the server's dependencies, and the
client's tests (``tests/client/``) pass against a server that this environment's Python runs.

The venv is built once per content of requirements-client.txt and Python version, under the temporary
directory (never in the working tree), behind a file lock so that parallel test workers share it. A
first build takes about 20 s with pip's cache (a minute or more without); later runs reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = ["flask", "werkzeug", "sqlalchemy", "alembic", "duckdb", "opendp", "statsmodels", "scipy", "sqlglot", "gunicorn", "Crypto"]

# The client installs and runs in its own venv; it is checked once, not again on PostgreSQL.
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def _pytest_requirement() -> str:
    """The pytest line of requirements-dev.txt: the client's tests run on the same pytest as the others."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    return next(line for line in lines if re.fullmatch(r"pytest\b[^-\w].*|pytest", line))


def _build(venv: Path, requirements: list[str]) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements-client.txt"), *requirements], check=True)
    (venv / ".complete").touch()


@pytest.fixture(scope="session")
def client_python() -> Path:
    """The Python of a venv with only the client's dependencies, built on first use and reused after."""
    extra = [_pytest_requirement()]
    key = hashlib.sha256(((ROOT / "requirements-client.txt").read_text() + repr(extra) + sys.version).encode()).hexdigest()[:16]
    venv = Path(tempfile.gettempdir()) / f"sandbox-client-venv-{key}"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            _build(venv, extra)
    return venv / "bin" / "python"


def _env(**extra: str) -> dict[str, str]:
    """The repository on the path (as an installed client would have it); nothing of this venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return env | {"PYTHONPATH": str(ROOT)} | extra


CHECK_IMPORTS = """
import importlib.util, sys
import sandbox.client, sandbox.client.scoring, sandbox.client.provider, sandbox.client.encrypt_upload
from sandbox.client import Client
assert sandbox.client.__file__.startswith(sys.argv[1]), sandbox.client.__file__
server = sys.argv[2:]
installed = [name for name in server if importlib.util.find_spec(name) is not None]
ours = ("sandbox.api", "sandbox.service", "sandbox.runtime", "sandbox.app", "sandbox.db")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in server or name.startswith(ours))
assert not installed and not loaded, (installed, loaded)
print("client alone:", Client.__name__)
"""


def test_the_client_imports_without_the_servers_dependencies(client_python: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(client_python), "-c", CHECK_IMPORTS, str(ROOT), *SERVER_ONLY],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "client alone: Client"


def test_the_servers_dependencies_are_really_absent(client_python: Path, tmp_path: Path) -> None:
    """The check above can fail: the server's app does not import in the client's venv."""
    run = subprocess.run(
        [str(client_python), "-c", "import sandbox.app"], cwd=tmp_path, env=_env(), capture_output=True, text=True, check=False
    )
    assert run.returncode != 0
    assert "ModuleNotFoundError" in run.stderr


def test_the_clients_tests_pass_with_only_the_clients_dependencies(client_python: Path, tmp_path: Path) -> None:
    # --confcutdir: the root conftest (the server's fixtures) is never loaded; the server runs on this Python.
    command = [str(client_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--confcutdir", str(ROOT / "tests" / "client")]
    command += ["--basetemp", str(tmp_path / "pytest"), str(ROOT / "tests" / "client")]
    run = subprocess.run(command, cwd=tmp_path, env=_env(SANDBOX_SERVER_PYTHON=sys.executable), capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed in ", summary), summary  # nothing skipped, failed or deselected
