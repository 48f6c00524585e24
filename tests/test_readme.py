"""The README's examples run as written on a fresh demo, top to bottom.

Every fenced block of README.md is either an example (```sh or ```python) or marked on the line
before it with ``<!-- not run: reason -->``; an unmarked block of another kind fails the test, so a
new block cannot be skipped silently. The examples run against what ``make run`` starts:
``scripts/run.sh`` itself (custodian, worker, gunicorn) on a temporary instance folder and free
ports. The only change made to a block is its port (``127.0.0.1:8000`` -> the free port). The blocks
run in a folder whose ``instance`` is that instance and whose ``sandbox`` points at the checkout
(the upload example reads ``sandbox/demo/data/pums.csv``). The ``sh`` blocks run in one bash, in
order, under ``set -Eeuo pipefail`` (every command must succeed; the README's ``curl -sf`` fails on
an HTTP error); each ``python`` block runs as a script at its place, with the tokens in the
environment as after ``source instance/demo-tokens.env``. Before they run, the analyst gets a
pending and a rejected grant on each demo dataset, so that the README's grant look-ups must select
by dataset and status, not by position.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.processes import running

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNABLE = frozenset({"sh", "python"})
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (\S.*?) -->$")
PORT = "127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason given in the marker


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, with the ``not run`` marker on the nearest non-blank line above each."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"README.md:{i + 1}: a code block is never closed"
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(above)
        found.append(Block(i + 1, match.group(1), "\n".join(lines[i + 1 : end]) + "\n", marker.group(1) if marker else None))
        i = end + 1
    return found


def test_every_block_is_an_example_or_says_why_it_is_not_run() -> None:
    found = blocks(README.read_text(encoding="utf-8"))
    unrunnable = [f"README.md:{b.line} ```{b.lang}" for b in found if b.not_run is None and b.lang not in RUNNABLE]
    assert unrunnable == [], "mark these <!-- not run: reason --> or make them sh/python examples"
    assert [b.lang for b in found if b.not_run is None].count("python") >= 2  # the client and scoring examples
    assert any("wait_job" in b.text for b in found if b.not_run is None)


def test_the_block_parser_sees_markers_and_refuses_an_unmarked_block() -> None:
    text = "<!-- not run: installs things -->\n```sh\npip install x\n```\n\n```console\n$ make\n```\n```python\nprint(1)\n```\n"
    found = blocks(text)
    assert [(b.line, b.lang, b.not_run) for b in found] == [(2, "sh", "installs things"), (6, "console", None), (9, "python", None)]
    assert found[2].text == "print(1)\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Demo:
    api: str
    folder: Path  # the working folder of the examples: instance/ and sandbox/ in it
    env: dict[str, str]  # the environment after `source instance/demo-tokens.env`


def _tokens(path: Path) -> dict[str, str]:
    script = f"set -eu; source {shlex.quote(str(path))}; env"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    pairs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {name: pairs[name] for name in ("ADMIN", "STEWARD", "ANALYST", "AUDITOR", "AUDITOR2")}


def _wait_until_serving(api: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300  # a loaded 2-core machine took 173 s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"scripts/run.sh ended with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{api}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"scripts/run.sh did not serve within 300 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "sandbox").symlink_to(ROOT / "sandbox")
    port, custodian_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),  # gunicorn's control socket and anything else per-user stay in the folder
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SANDBOX_INSTANCE_PATH": str(folder / "instance"),
        "RUN_PORT": str(port),
        "RUN_CUSTODIAN_PORT": str(custodian_port),
    }
    log = folder / "run.log"
    with running(["bash", "scripts/run.sh"], env=env, log=log, cwd=ROOT) as process:
        api = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        _wait_until_serving(api, process, log)
        print(f"scripts/run.sh served after {time.monotonic() - started:.1f} s")  # shown with -s
        tokens = _tokens(folder / "instance" / "demo-tokens.env")
        yield Demo(api, folder, {"PATH": env["PATH"], "HOME": env["HOME"], "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)} | tokens)


def _decoy_grants(demo: Demo) -> None:
    """A pending and a rejected grant of the analyst on each demo dataset, created before the examples run."""
    analyst, steward = (
        {"Authorization": f"Bearer {demo.env[name]}", "Content-Type": "application/json"} for name in ("ANALYST", "STEWARD")
    )
    datasets = requests.get(f"{demo.api}/api/v1/datasets", headers=analyst, timeout=30).json()["items"]
    for dataset in datasets:
        for decision in ("pending", "rejected"):
            body = {"dataset_ids": [dataset["id"]], "scenario": f"Demo: a {decision} request", "requested": {"job_kinds": ["query", "he"]}}
            response = requests.post(f"{demo.api}/api/v1/grants", headers=analyst, json=body, timeout=30)
            assert response.status_code == 201, response.text
            if decision == "rejected":
                url = f"{demo.api}/api/v1/grants/{response.json()['id']}/reject"
                rejected = requests.post(url, headers=steward, json={"reason": "not this one"}, timeout=30)
                assert rejected.status_code == 200, rejected.text


def _script(demo: Demo, examples: list[Block]) -> tuple[str, dict[int, int]]:
    """One bash script of the examples in order, and the README line of each script line."""
    lines = ["set -Eeuo pipefail", "trap 'echo \"step failed (exit $?) at script line $LINENO: $BASH_COMMAND\" >&2' ERR"]
    origin: dict[int, int] = {}
    port = demo.api.removeprefix("http://")
    for block in examples:
        text = block.text.replace(PORT, port)
        lines.append(f"echo '== README.md:{block.line} ({block.lang})'")
        if block.lang == "python":
            path = demo.folder / f"readme_{block.line}.py"
            path.write_text(text, encoding="utf-8")
            origin[len(lines) + 1] = block.line + 1
            lines.append(f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}")
            continue
        for offset, line in enumerate(text.splitlines()):
            origin[len(lines) + 1] = block.line + 1 + offset
            lines.append(line)
    return "\n".join(lines) + "\n", origin


def test_the_readme_examples_run_on_the_demo(demo: Demo) -> None:
    _decoy_grants(demo)
    examples = [b for b in blocks(README.read_text(encoding="utf-8")) if b.not_run is None]
    script, origin = _script(demo, examples)
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", script], cwd=demo.folder, env=demo.env, capture_output=True, text=True, timeout=240, check=False)
    print(f"the README examples ran in {time.monotonic() - started:.1f} s")  # shown with -s
    failed = re.search(r"at script line (\d+)", done.stderr)
    where = f"README.md:{origin.get(int(failed.group(1)), '?')}" if failed else "?"
    assert done.returncode == 0, f"a README step failed at {where}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    out = done.stdout
    # The outputs the README's comments promise.
    assert "cannot be plain" in out  # the policy that lets pid out is refused, naming the column
    assert '"rule":"measure_outside_aggregate"' in out  # the query the policy refuses
    assert '"ok":true' in out  # the ledger verifies
    assert out.count('"withheld":4') >= 1  # races 5 and 6 withheld (count and mean each)
    summary = re.findall(r"'(requested|scored|unavailable)': (\d+)", out)  # the scoring summary
    assert dict(summary) == {"requested": "3", "scored": "1", "unavailable": "2"}
    assert re.search(r'"cells": ?4', out)  # the custodian decrypted the 4 released cells' sums only
