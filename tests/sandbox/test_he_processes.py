"""An he aggregate end to end with real processes: custodian, API server and worker, each with its own files.

The custodian runs as this user with its directory private to it. When the tests run as root, the
sandbox (init, gunicorn, worker) runs as ``nobody`` with its own instance folder, so the worker
provably cannot read the custodian's directory; otherwise the two only have separate directories
and environments. The provider encrypts with the real ``paillier_bulk.encrypt_column`` through
``Client.upload_encrypted`` and through ``python -m sandbox encrypt-upload``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from custodian.config import Settings
from custodian.vault import Vault
from sandbox.client import Client
from sandbox.client.encrypt_upload import encrypt_upload
from tests.conftest import PUMS_META
from tests.processes import running
from tests.sandbox.hekit import HE_POLICY, RACE_SPEC, pums_frame

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
ADMIN_TOKEN = "sbx_he-e2e-admin-token-0123456789abcdef"
SEPARATE_USER = os.geteuid() == 0 and shutil.which("setpriv") is not None


def _interpreter(prefix: list[str]) -> tuple[str, dict[str, str]]:
    """A Python that ``prefix``'s user can run and start again: the worker's job children are started by
    a forkserver that executes ``sys.executable`` anew. A venv whose interpreter links into a folder
    only root may enter (e.g. pyenv's under ``/root``) is not executable by ``nobody``; then the
    system's Python of the same version runs with this venv's packages on its path.
    """
    if not prefix:
        return sys.executable, {}
    again = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True)"
    if subprocess.run([*prefix, sys.executable, "-c", again], capture_output=True, check=False, timeout=60).returncode == 0:
        return sys.executable, {}
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.access(system, os.X_OK):
        pytest.skip(f"no Python that {NOBODY} can execute again: {sys.executable} is not, and {system} is missing")
    packages = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    return system, {"PYTHONPATH": os.pathsep.join([str(ROOT), *packages])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@dataclass
class Deployment:
    api: str
    custodian: str
    custodian_settings: Settings
    base: Path
    sandbox_prefix: list[str]
    sandbox_env: dict[str, str]


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp_path = tmp_path_factory.mktemp("he-e2e")
    base = Path(tempfile.mkdtemp(prefix="sandbox-he-e2e-"))
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if SEPARATE_USER else []
    if SEPARATE_USER:
        os.chown(base, NOBODY, NOBODY)
    common = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    interpreter, paths = _interpreter(prefix)
    sandbox_env = common | paths | {"SANDBOX_INSTANCE_PATH": str(base / "instance"), "SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN, "HOME": str(base)}
    custodian_env = common | {"SANDBOX_CUSTODIAN_DIR": str(tmp_path / "custodian"), "HOME": str(tmp_path)}
    python = [sys.executable, "-m", "sandbox"]
    sandboxed = [interpreter, "-m", "sandbox"]

    def sandbox(*args: str) -> str:
        return _run([*prefix, *sandboxed, *args], sandbox_env)

    sandbox("init")
    _run([*python, "custodian", "init"], custodian_env)
    settings = Settings.from_env(custodian_env)
    settings.domain_key_file.write_text(sandbox("keys", "export-public"))  # the domain's public key, handed over
    custodian_port, api_port = _free_port(), _free_port()
    log = tmp_path / "processes.log"
    serve = [*python, "custodian", "serve", "--port", str(custodian_port)]
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)  # after every process is stopped
        stack.enter_context(running(serve, cwd=ROOT, env=custodian_env, log=log))
        _wait_for(custodian_port)
        custodian_url = f"http://127.0.0.1:{custodian_port}"
        sandbox("he", "register-key", "--from", custodian_url)
        worker_env = sandbox_env | {"SANDBOX_CUSTODIAN_URL": custodian_url}
        gunicorn = [interpreter, "-m", "gunicorn", "--bind", f"127.0.0.1:{api_port}", "--workers", "1", "wsgi:app"]
        stack.enter_context(running([*prefix, *gunicorn], cwd=ROOT, env=sandbox_env, log=log))
        stack.enter_context(running([*prefix, *sandboxed, "worker"], cwd=ROOT, env=worker_env, log=log))
        _wait_for(api_port)
        yield Deployment(f"http://127.0.0.1:{api_port}", custodian_url, settings, base, prefix, worker_env)


def _post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def _people(api: str) -> dict[str, str]:
    """A bureau with its steward, an enterprise with its analyst; their tokens."""
    tokens = {}
    for name, kind, role in (("Bureau", "bureau", "steward"), ("Bank", "enterprise", "analyst")):
        org = _post(f"{api}/api/v1/orgs", ADMIN_TOKEN, {"name": f"{name} {uuid.uuid4().hex[:8]}", "kind": kind})
        tokens[role] = _post(f"{api}/api/v1/users", ADMIN_TOKEN, {"name": role, "org_id": org["id"], "role": role})["token"]
    return tokens


def test_the_worker_cannot_read_the_custodians_directory(deployment: Deployment) -> None:
    if not SEPARATE_USER:
        pytest.skip("needs root to run the sandbox as another user")
    probe = f"open({str(deployment.custodian_settings.key_file)!r}).read()"
    done = subprocess.run(
        [*deployment.sandbox_prefix, sys.executable, "-c", probe], env=deployment.sandbox_env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "PermissionError" in done.stderr
    assert not any(k.startswith("SANDBOX_CUSTODIAN_DIR") for k in deployment.sandbox_env)


def test_an_encrypted_upload_is_aggregated_end_to_end(deployment: Deployment, tmp_path: Path) -> None:
    tokens = _people(deployment.api)
    frame = pums_frame().head(200)
    csv = tmp_path / "pums200.csv"
    frame.to_csv(csv, index=False)
    fingerprint = Vault(deployment.custodian_settings).public().fingerprint
    steward = Client(deployment.api, tokens["steward"])
    dataset = steward.upload_encrypted(csv, PUMS_META | {"name": "pums_he"}, {"income": 0}, key_fingerprint=fingerprint)
    assert dataset["columns"]["income"]["paillier"] == {"key": fingerprint, "scale": 0}

    analyst = Client(deployment.api, tokens["analyst"])
    grant = analyst.request_grant([dataset["id"]], "Income totals by race for a market study", ["he"])
    steward.approve(grant["id"], HE_POLICY, "2099-01-01T00:00:00Z")
    result = analyst.wait(analyst.submit(grant["id"], "he", RACE_SPEC), poll=0.1, timeout=120)

    expected = frame.groupby("race").agg(n=("pid", "size"), total=("income", "sum"))
    for _, row in result.iterrows():
        if expected.loc[row["race"], "n"] >= 10:
            assert (row["n"], row["total"]) == (expected.loc[row["race"], "n"], expected.loc[row["race"], "total"])
        else:
            assert row.isna()["total"]
    decrypted = [json.loads(line) for line in deployment.custodian_settings.log_file.read_text().splitlines()]
    assert [line["outcome"] for line in decrypted] == ["decrypted"]
    assert decrypted[0]["cells"] == int((expected["n"] >= 10).sum())


def test_encrypt_upload_reads_its_token_from_the_environment(deployment: Deployment, tmp_path: Path) -> None:
    tokens = _people(deployment.api)
    csv, meta = tmp_path / "small.csv", tmp_path / "meta.json"
    pums_frame().head(30).assign(income=lambda f: f["income"] / 100).to_csv(csv, index=False)
    declared = PUMS_META | {"name": "pums_small"}
    declared["columns"] = declared["columns"] | {"income": {"role": "sensitive", "type": "float", "bounds": [0, 5000]}}
    meta.write_text(json.dumps(declared))
    args = ["--url", deployment.api, "--file", str(csv), "--meta", str(meta), "--encrypt", "income:2"]
    result = CliRunner(env={"SANDBOX_TOKEN": tokens["steward"]}).invoke(encrypt_upload, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rows"] == 30
    assert out["encrypted"]["income"]["scale"] == 2
    refused = CliRunner(env={"SANDBOX_TOKEN": ""}).invoke(encrypt_upload, args)
    assert (refused.exit_code, "no API token" in refused.output) == (2, True)
