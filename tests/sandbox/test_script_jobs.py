"""Script jobs through the API: dry runs show everything, real runs are held for two reviewers, the analyst sees only that.

The escapes of ``test_script_isolation`` that matter most are run again here as the job an analyst
submits, through a worker: each is contained, and what the analyst sees of it is the same "held" as
of a script that succeeded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from flask import Flask
from PIL import Image

from sandbox.api.analyst_view import SCRIPT_SETTLE_SECONDS
from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime import script_run
from sandbox.scripts import isolation, runtime
from sandbox.service import blind_review
from tests.conftest import PUMS_POLICY, World, auth, make_user, request_grant
from tests.sandbox.jobkit import approve, job_json, run_worker

pytestmark = pytest.mark.skipif(bool(isolation.unavailable()), reason=isolation.unavailable() or "isolation available")

SCRIPT_POLICY = {**PUMS_POLICY, "job_kinds": ["query", "script"]}
ANALYSIS = """
import sandbox_io
import matplotlib.pyplot as plt
df = sandbox_io.read("pums")
print("columns:", ",".join(sorted(df.columns)))
table = df.groupby("sex").agg(n=("age", "size"), mean_income=("income", "mean"))
sandbox_io.emit("by_sex", table)
sandbox_io.emit("note", "rows: %d" % len(df))
fig, ax = plt.subplots(figsize=(2, 2))
ax.hist(df["age"])
sandbox_io.emit("ages", fig)
"""
OUTPUTS = {"by_sex": {"type": "table"}, "note": {"type": "text"}, "ages": {"type": "figure"}}


def spec(code: str, outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"language": "python", "code": textwrap.dedent(code), "datasets": ["pums"], "outputs": outputs or OUTPUTS, **extra}


@pytest.fixture
def script_grant(world: World, pums: dict[str, Any]) -> str:
    response = request_grant(world, [pums["id"]], ["query", "script"])
    assert response.status_code == 201, response.json
    approve(world, response.json["id"], SCRIPT_POLICY)
    return str(response.json["id"])


def dry_run(world: World, grant_id: str, body: dict[str, Any], rows: int = 200) -> Any:
    payload = {"grant_id": grant_id, "kind": "script", "spec": body, "rows": rows, "seed": 7}
    return world.client.post("/api/v1/jobs/dry-run", headers=auth(world.analyst), json=payload)


def submit(world: World, grant_id: str, body: dict[str, Any]) -> str:
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": "script", "spec": body})
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def test_a_dry_run_returns_outputs_logs_exit_status_and_timings(world: World, script_grant: str) -> None:
    response = dry_run(world, script_grant, spec(ANALYSIS))
    assert response.status_code == 200, response.json
    body = response.json
    run = body["run"]
    assert run["exit_status"] == 0, run
    assert run["problems"] == []
    assert run["seconds"] > 0
    # Only the columns the policy grants; never the identifier pid, nor the ungranted married.
    assert run["stdout"].strip() == "columns: age,educ,income,race,sex"
    by_sex = body["outputs"]["by_sex"]
    assert [c["name"] for c in by_sex["columns"]] == ["sex", "n", "mean_income"]
    assert sum(row["n"] for row in by_sex["rows"]) == 200
    assert body["outputs"]["note"] == {"type": "text", "text": "rows: 200"}
    png = base64.b64decode(body["outputs"]["ages"]["png_base64"])
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (200, 200)
        assert not image.info.get("Software")  # redrawn: matplotlib's metadata is gone
    assert body["summary"]["runtime"] == runtime.describe()  # the pinned runtime's hash, recorded with the job


def test_a_failing_dry_run_shows_its_stderr_and_exit_status(world: World, script_grant: str) -> None:
    response = dry_run(world, script_grant, spec("import sandbox_io\nsandbox_io.read('pums')['pid']"))
    assert response.status_code == 200, response.json
    run = response.json["run"]
    assert run["exit_status"] == 1
    assert "KeyError: 'pid'" in run["stderr"]
    assert response.json["outputs"] == {}


def test_a_malformed_output_fails_the_run(world: World, script_grant: str) -> None:
    code = "open('/out/by_sex.json', 'w').write('{\"columns\": [\"a\"], \"data\": [[1, 2]]}')"
    response = dry_run(world, script_grant, spec(code, {"by_sex": {"type": "table"}}))
    assert response.status_code == 200, response.json
    assert response.json["outputs"] == {}
    assert response.json["run"]["problems"] == ["output 'by_sex': every row of a table output has one cell per column"]


def test_the_grant_must_list_script_in_its_job_kinds(world: World, approved: str) -> None:
    response = world.client.post(
        "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": approved, "kind": "script", "spec": spec(ANALYSIS)}
    )
    assert response.status_code == 403
    assert response.json["error"]["details"] == {"job_kind": "script"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"language": "r"}, "language", id="language"),
        pytest.param({"outputs": {"Bad Name": {"type": "table"}}}, "outputs", id="output-name"),
        pytest.param({"outputs": {"t": {"type": "movie"}}}, "outputs", id="output-type"),
        pytest.param({"code": ""}, "code", id="empty-code"),
        pytest.param({"extra": 1}, "extra", id="unknown-field"),
    ],
)
def test_a_malformed_spec_is_refused(world: World, script_grant: str, body: dict[str, Any], field: str) -> None:
    response = dry_run(world, script_grant, {**spec(ANALYSIS), **body})
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "validation_error"
    assert response.json["error"]["details"]["problems"][0]["field"].startswith(field)


def test_a_dataset_outside_the_grant_is_refused(world: World, script_grant: str) -> None:
    response = dry_run(world, script_grant, {**spec(ANALYSIS), "datasets": ["teacher_survey"]})
    assert response.status_code == 422
    assert response.json["error"]["details"]["rule"] == "dataset_not_granted"


def test_scripts_are_refused_where_they_cannot_be_isolated(world: World, script_grant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation.confine, "unavailable", lambda: "script jobs need bubblewrap")
    for response in (
        dry_run(world, script_grant, spec(ANALYSIS)),
        world.client.post(
            "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": script_grant, "kind": "script", "spec": spec(ANALYSIS)}
        ),
    ):
        assert response.status_code == 400
        assert response.json["error"] == {
            "code": "scripts_unavailable",
            "message": "script jobs need bubblewrap",
            "details": {"field": "kind"},
        }


def test_scripts_are_refused_without_their_pinned_runtime(
    world: World, script_grant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No runtime, no script job: never a silent fall back to the service's venv."""
    monkeypatch.setattr(runtime, "RUNTIME", tmp_path / "no-runtime")
    for response in (
        dry_run(world, script_grant, spec(ANALYSIS)),
        world.client.post(
            "/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": script_grant, "kind": "script", "spec": spec(ANALYSIS)}
        ),
    ):
        assert response.status_code == 400
        error = response.json["error"]
        assert (error["code"], error["details"]) == ("scripts_unavailable", {"field": "kind"})
        assert "pinned runtime" in error["message"]
        assert "not installed" in error["message"]


@pytest.fixture
def second_auditor(world: World, app: Flask) -> str:
    _, token = make_user(world.client, app.config["ADMIN_TOKEN"], world.ids["audit"], "auditor", "second auditor")
    return token


def review(world: World, token: str, job_id: str, decision: str, reason: str = "checked against the rules") -> Any:
    return world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(token), json={"decision": decision, "reason": reason})


def analyst_view(world: World, job_id: str) -> dict[str, Any]:
    job = job_json(world, job_id)
    return {key: job[key] for key in ("status", "stage", "reason", "verdict", "started_at", "finished_at", "run_seconds", "queued_seconds")}


def settle(app: Flask, *job_ids: str) -> None:
    """Let each job's time limit and its launcher's grace pass, as if it had started that long ago."""
    with get_db_of(app).writing() as session:
        for job_id in job_ids:
            job = session.get(Job, job_id)
            assert job is not None
            assert job.started_at is not None
            job.started_at -= timedelta(seconds=job.timeout_seconds + SCRIPT_SETTLE_SECONDS + 1)


@pytest.mark.slow
def test_a_real_run_is_held_for_two_reviewers_then_released(world: World, app: Flask, script_grant: str, second_auditor: str) -> None:
    job_id = submit(world, script_grant, spec(ANALYSIS))
    assert run_worker(app) == 1
    early = analyst_view(world, job_id)  # held already, but its time limit has not passed: running, as any script then
    assert (early["status"], early["stage"], early["reason"], early["verdict"]) == ("running", "execute", None, None)
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json["error"]["details"]["status"] == "running"
    settle(app, job_id)
    seen = analyst_view(world, job_id)
    assert seen["status"] == "held"
    assert seen["reason"] == "held for review by the bureau's auditors"
    assert (seen["run_seconds"], seen["started_at"], seen["finished_at"]) == (None, None, None)
    assert world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).status_code == 409

    items = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    (item,) = [i for i in items if i["job"]["id"] == job_id]
    assert item["job"]["spec"]["code"] == textwrap.dedent(ANALYSIS)  # the reviewer reads the code
    raw = {row["item"]: row["value"] for row in item["raw"]["rows"]}
    assert raw["exit_status"] == "0"
    assert "columns: age,educ,income,race,sex" in raw["stdout"]
    assert set(item["proposed"]["outputs"]) == {"by_sex", "note", "ages"}
    packages = raw["packages"].splitlines()  # the runtime's package list, and its hash as recorded with the job
    assert any(p.startswith("pandas==") for p in packages)
    assert tuple(packages) == runtime.packages()  # the pinned runtime's, not the service's venv
    assert "scikit-learn==1.9.1" in packages
    assert not any(p.startswith("flask==") for p in packages)
    assert hashlib.sha256(raw["packages"].encode()).hexdigest() == item["job"]["verdict"]["runtime"]["packages_sha256"]

    assert review(world, world.auditor, job_id, "release").json["status"] == "held"  # one reviewer is not enough for a script
    assert review(world, second_auditor, job_id, "release").json["status"] == "released"
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    rows = int(result["outputs"]["note"]["text"].removeprefix("rows: "))
    assert rows == 1000
    assert sum(row["n"] for row in result["outputs"]["by_sex"]["rows"]) == rows
    assert "run" not in result


@pytest.fixture
def listening() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


SECRET = "worker-secret-that-must-not-reach-a-script"
TEXT = {"t": {"type": "text"}}


@pytest.mark.slow
def test_a_failed_or_escaping_run_looks_like_any_held_run_to_the_analyst(
    world: World, app: Flask, script_grant: str, listening: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each escape is contained, seen by the reviewers, and leaves the analyst the same view as a run that succeeded."""
    monkeypatch.setenv("SANDBOX_TEST_SECRET", SECRET)  # in the worker's environment
    database = app.config["DATABASE_URL"].removeprefix("sqlite:///")  # on PostgreSQL: a path that does not exist either
    read = "print(open({!r}, 'rb').read())"
    escapes: dict[str, tuple[str, str]] = {  # name -> (code, what the reviewers' raw table shows)
        "network-public": ("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)", "Address family not supported"),
        "dns": ("import socket\nsocket.getaddrinfo('example.com', 80)", "gaierror"),
        "api-port": (f"import socket\nsocket.create_connection(('127.0.0.1', {listening}), timeout=2)", "Address family not supported"),
        "etc-shadow": (read.format("/etc/shadow"), "FileNotFoundError"),
        "master-key": (read.format(app.config["MASTER_KEY_FILE"]), "FileNotFoundError"),
        "instance-db": (read.format(database), "FileNotFoundError"),
        "proc-environ": (
            "import os\nfor p in os.listdir('/proc'):\n    if p.isdigit(): print(open(f'/proc/{p}/environ', 'rb').read())",
            "PATH=",  # the sandbox's own processes only, with the sandbox's own environment
        ),
        "write-outside-out": ("open('/usr/escape', 'w')", "Read-only file system"),
        "symlink": ("import os\nos.symlink('/data/pums.parquet', '/out/t.txt')", "not a regular file (a symlink)"),
        "hard-link": ("import os\nopen('/out/x', 'w').write('1')\nos.link('/out/x', '/out/t.txt')", "a hard link"),
        "huge-output": ("f = open('/out/t.txt', 'wb')\nfor _ in range(1024):\n    f.write(b'x' * 2**20)", "OSError"),
        "fork-bomb": (
            "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n"
            "except OSError:\n    print('fork refused at the pids limit')",
            "fork refused at the pids limit",
        ),
        "memory-bomb": ("x = bytearray(64 * 2**30)", "MemoryError"),
        "tiocsti": ("import fcntl, termios\nfcntl.ioctl(0, termios.TIOCSTI, b'x')", "Operation not permitted"),
        "cpu-spin": ("while True:\n    pass", "timed_out: true"),
    }
    bodies = {name: spec(code, TEXT, **({"timeout_seconds": 2} if name == "cpu-spin" else {})) for name, (code, _) in escapes.items()}
    bodies["succeeds"] = spec("import sandbox_io\nsandbox_io.emit('t', 'ok')", TEXT)
    jobs = {name: submit(world, script_grant, body) for name, body in bodies.items()}
    assert run_worker(app) == len(jobs)
    views = {name: analyst_view(world, job_id) for name, job_id in jobs.items()}
    assert all(view == views["succeeds"] for view in views.values()), views
    assert views["succeeds"]["status"] == "running"  # until the time limit has passed, however long each ran
    settle(app, *jobs.values())
    views = {name: analyst_view(world, job_id) for name, job_id in jobs.items()}
    assert all(view == views["succeeds"] for view in views.values()), views
    assert views["succeeds"]["status"] == "held"
    items = {i["job"]["id"]: i for i in world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]}
    assert items[jobs["succeeds"]]["proposed"]["outputs"] == {"t": {"type": "text", "text": "ok"}}
    for name, (_, evidence) in escapes.items():
        item = items[jobs[name]]
        raw = {row["item"]: row["value"] for row in item["raw"]["rows"]}
        shown = "\n".join(f"{key}: {value}" for key, value in raw.items())
        assert item["proposed"]["outputs"] == {}, name  # nothing of a failed run can be released
        assert evidence in shown, (name, shown)
        assert SECRET not in shown, name


def test_join_keys_reach_a_script_only_as_tokens_of_the_run(world: World, pums: dict[str, Any]) -> None:
    response = request_grant(world, [pums["id"]], ["script"])
    assert response.status_code == 201, response.json
    columns = {**PUMS_POLICY["columns"]["pums"], "pid": "join_key"}
    approve(world, response.json["id"], {**PUMS_POLICY, "job_kinds": ["script"], "columns": {"pums": columns}})
    code = "import sandbox_io\ndf = sandbox_io.read('pums')\nsandbox_io.emit('t', df[['pid']].head(3))"
    first, second = (dry_run(world, response.json["id"], spec(code, {"t": {"type": "table"}})) for _ in range(2))  # same seed, same rows
    tokens = [[row["pid"] for row in r.json["outputs"]["t"]["rows"]] for r in (first, second)]
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens[0])
    assert not set(tokens[0]) & set(tokens[1])  # a new key each run: tokens do not link runs


def test_tokens_are_equal_for_equal_values_and_keyed() -> None:
    values = pa.chunked_array([[5, 7, None], [5]])
    one, other = script_run.tokens(b"k" * 32, values).to_pylist(), script_run.tokens(b"j" * 32, values).to_pylist()
    assert one[0] == one[3] != one[1]
    assert one[2] is None
    assert not {one[0], one[1]} & {other[0], other[1]}
    assert "5" not in one


CROSSTAB = """
import sandbox_io
df = sandbox_io.read("pums")
counts = sandbox_io.crosstab(df, "sex", "educ")
means = sandbox_io.crosstab(df, "sex", values="income", aggfunc="mean")
changed = sandbox_io.crosstab(df, "sex", values="income", aggfunc="sum")
changed.iloc[0, -1] += 1000
sandbox_io.emit("counts", counts)
sandbox_io.emit("means", means)
sandbox_io.emit("changed", changed)
sandbox_io.emit("fit", sandbox_io.ols(df, "income", ["age", "educ"]))
sandbox_io.emit("small_fit", sandbox_io.ols(df.head(12), "income", ["age", "educ"]))
"""


def test_helper_tables_carry_evidence_judged_by_the_grants_rules(world: World, script_grant: str) -> None:
    outputs = {name: {"type": "table"} for name in ("counts", "means", "changed", "fit", "small_fit")}
    response = dry_run(world, script_grant, spec(CROSSTAB, outputs), rows=200)
    assert response.status_code == 200, response.json
    run = response.json["run"]
    assert run["exit_status"] == 0, run
    evidence = run["evidence"]
    counts = response.json["outputs"]["counts"]
    # 200 rows over 2 sexes x 16 education levels: cells of fewer than 10 rows fail the threshold rule.
    small = [i for i, row in enumerate(counts["rows"]) if row["count"] < 10]
    assert small
    assert [f["row"] for f in evidence["counts"]["flagged"] if f["rule"] == "threshold"] == small
    assert evidence["counts"]["advisory"] is True
    assert evidence["counts"]["matches_table"] is True
    assert evidence["means"]["cells"] == 2
    assert evidence["means"]["matches_table"] is True
    assert evidence["changed"]["matches_table"] is False  # changed after the helper made it: the evidence does not describe it
    assert [row["term"] for row in response.json["outputs"]["fit"]["rows"]] == ["const", "age", "educ"]
    assert (evidence["fit"]["status"], evidence["fit"]["matches_table"]) == ("pass", True)
    assert [f["rule"] for f in evidence["small_fit"]["flagged"]] == ["dof"]  # 12 rows - 3 terms = 9 < 10


PIVOT = """
import sandbox_io
df = sandbox_io.read("pums")
sandbox_io.emit("wide", sandbox_io.pivot_table(df, "income", index="educ", columns="sex", aggfunc="mean"))
sandbox_io.emit("counts", sandbox_io.pivot_table(df, "income", index="educ", columns="sex", aggfunc="count"))
sandbox_io.emit("medians", sandbox_io.pivot_table(df, "income", index="sex", aggfunc="median"))
changed = sandbox_io.pivot_table(df, "income", index="sex", aggfunc="sum")
changed.iloc[0, -1] += 1000
sandbox_io.emit("changed", changed)
sandbox_io.emit("summary", sandbox_io.describe(df, ["age", "income"]))
"""


def test_pivot_tables_and_describe_carry_evidence_judged_by_the_grants_rules(world: World, script_grant: str) -> None:
    outputs = {name: {"type": "table"} for name in ("wide", "counts", "medians", "changed", "summary")}
    response = dry_run(world, script_grant, spec(PIVOT, outputs), rows=200)
    assert response.status_code == 200, response.json
    run = response.json["run"]
    assert run["exit_status"] == 0, run
    evidence, tables = run["evidence"], response.json["outputs"]
    wide, counts = tables["wide"], tables["counts"]
    sexes = [c["name"] for c in wide["columns"]][1:]
    assert sexes in (["sex=0", "sex=1"], ["sex=1", "sex=2"]), sexes
    # Mock income has no missing value, so a cell's count is its rows: those under 10 fail the threshold rule.
    small = {(i, sex) for i, row in enumerate(counts["rows"]) for sex in sexes if row[sex] is not None and row[sex] < 10}
    assert small
    assert {(f["row"], f["column"]) for f in evidence["wide"]["flagged"] if f["rule"] == "threshold"} == small
    assert all(evidence[name]["matches_table"] for name in ("wide", "counts", "medians", "summary"))
    assert evidence["wide"]["advisory"] is True
    assert evidence["medians"]["cells"] == 2
    assert evidence["changed"]["matches_table"] is False  # changed after the helper made it
    summary = tables["summary"]
    assert [c["name"] for c in summary["columns"]] == ["column", "count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    assert [row["column"] for row in summary["rows"]] == ["age", "income"]
    assert summary["rows"][0]["count"] == 200
    assert evidence["summary"]["cells"] == 16
    # A maximum is the value of the rows at the top: unless 10 share it, the order-statistic rule flags it.
    flagged = {(f["row"], f["column"]): f for f in evidence["summary"]["flagged"]}
    assert flagged[1, "max"]["rule"] == "order_statistic"  # income's maximum is one row's
    assert flagged[1, "max"]["evidence"]["above"] < 10
    assert {(0, "count"), (1, "count"), (0, "mean")}.isdisjoint(flagged)  # 200 rows, positive ages: nothing to flag


@pytest.mark.slow
def test_reviewers_release_some_outputs_and_return_the_others(world: World, app: Flask, script_grant: str, second_auditor: str) -> None:
    job_id = submit(world, script_grant, spec(ANALYSIS))
    assert run_worker(app) == 1

    def decide(token: str, decision: str, reason: str, outputs: list[str] | None) -> Any:
        body = {"decision": decision, "reason": reason, **({"outputs": outputs} if outputs is not None else {})}
        return world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(token), json=body)

    assert decide(world.auditor, "reject", "no", ["note"]).status_code == 400  # outputs go with a release only
    assert decide(world.auditor, "release", "aggregates of many", ["by_sex", "note"]).json["status"] == "held"
    assert decide(second_auditor, "release", "checked", ["by_sex", "secret"]).status_code == 400  # not a proposed output
    second = decide(second_auditor, "release", "the note could single out a person; the table may go", ["by_sex"])
    assert second.json["status"] == "released", second.json
    settle(app, job_id)

    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(world.analyst)).json
    assert set(result["outputs"]) == {"by_sex"}
    assert result["returned"] == ["ages", "note"]
    assert result["decision"]["reason"] == "aggregates of many / the note could single out a person; the table may go"  # both reasons
    with get_db_of(app).sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.released_cells == 6  # the released table's cells only: 2 sexes x (sex, n, mean_income)


def everything_seen_by(world: World, token: str, job_id: str) -> dict[str, Any]:
    """What an auditor can read of a job while its review is open: the review queue, the job, the job list, the ledger."""
    queue = world.client.get("/api/v1/reviews", headers=auth(token)).json["items"]
    ledger = world.client.get("/api/v1/audit/events?limit=1000", headers=auth(token)).json["items"]
    return {
        "queue": [item for item in queue if item["job"]["id"] == job_id],
        "job": job_json(world, job_id, token),
        "jobs": world.client.get("/api/v1/jobs", headers=auth(token)).json,
        "ledger": [event for event in ledger if event["object_id"] == job_id],
    }


def test_a_reviewer_sees_no_other_decision_until_the_review_is_complete(
    world: World, app: Flask, script_grant: str, second_auditor: str
) -> None:
    job_id = submit(world, script_grant, spec(ANALYSIS))
    assert run_worker(app) == 1
    first_reason = "REASON-OF-THE-FIRST: the note singles out a person"
    before = everything_seen_by(world, second_auditor, job_id)
    first = world.client.post(
        f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json={"decision": "reject", "reason": first_reason, "outputs": None}
    )
    assert first.status_code == 200, first.json
    assert first.json["status"] == "held"  # a rejection does not end a script job's review by itself

    seen = everything_seen_by(world, second_auditor, job_id)
    assert first_reason not in str(seen)
    (item,) = seen["queue"]  # still in the queue, as it was: the job, its output and proposal unchanged
    unchanged = {key: value for key, value in before["queue"][0].items() if key != "decisions"}
    assert ({key: value for key, value in item.items() if key != "decisions"}, seen["job"]) == (unchanged, before["job"])
    (decided,) = item["decisions"]  # who decided and when, as review.submitted's actor on the ledger says; never what
    assert item["blinded"] is True
    assert (decided["decision"], decided["reason"], decided["outputs"]) == (None, None, None)
    new_events = seen["ledger"][len(before["ledger"]) :]
    assert [e["action"] for e in new_events] == ["review.submitted", "review.view"]  # the decision is recorded...
    submitted = new_events[0]["details"]
    assert {"decision", "reason", "outputs"}.isdisjoint(submitted)  # ...as a commitment only
    assert (submitted["decided"], submitted["required"]) == (1, 2)

    second = review(world, second_auditor, job_id, "release", "aggregates of many persons")
    assert second.json["status"] == "rejected"  # complete: any rejection rejects
    assert second.json["reason"] == first_reason
    ledger = everything_seen_by(world, second_auditor, job_id)["ledger"]
    opened = [e for e in ledger if e["action"] == "review.opened"]
    assert len(opened) == 1
    decisions = opened[0]["details"]["decisions"]
    assert [(d["decision"], d["reason"]) for d in decisions] == [("reject", first_reason), ("release", "aggregates of many persons")]
    commitments = [e["details"]["commitment"] for e in ledger if e["action"] == "review.submitted"]
    canonical = [json.dumps(d, sort_keys=True, separators=(",", ":")).encode() for d in decisions]
    assert commitments == [hashlib.sha256(c).hexdigest() for c in canonical]  # each decision as committed before it was shown
    settle(app, job_id)
    assert analyst_view(world, job_id)["status"] == "rejected"
    assert analyst_view(world, job_id)["reason"] == first_reason


def test_selections_with_nothing_in_common_return_every_output_and_answer_no_error(
    world: World, app: Flask, script_grant: str, second_auditor: str
) -> None:
    """An error here would tell the second reviewer the first one's selection, one retried output at a time."""
    job_id = submit(world, script_grant, spec(ANALYSIS))
    assert run_worker(app) == 1
    body = {"decision": "release", "reason": "the table may go", "outputs": ["by_sex"]}
    assert world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(world.auditor), json=body).json["status"] == "held"
    body = {"decision": "release", "reason": "the figure may go", "outputs": ["ages"]}
    second = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(second_auditor), json=body)
    assert second.status_code == 200, second.json
    assert second.json["status"] == "rejected"
    assert second.json["reason"] == f"{blind_review.NOTHING_IN_COMMON}: the table may go / the figure may go"
    again = world.client.post(f"/api/v1/reviews/{job_id}", headers=auth(second_auditor), json={**body, "outputs": ["by_sex"]})
    assert again.status_code == 409  # one decision per reviewer: nothing to probe


@pytest.mark.slow
def test_outputs_that_break_a_parser_end_held_like_any_run(world: World, app: Flask, script_grant: str) -> None:
    """A script chooses its outputs' bytes: none of them may turn its job into a failure the analyst sees."""
    table = {"t": {"type": "table"}}
    write = "open('/out/{}', 'w').write({!r})"
    good = '{"columns": ["a"], "data": [[1]]}'
    bodies = {
        "succeeds": spec(write.format("t.json", good), table),
        "lone-surrogate": spec(write.format("t.json", '{"columns": ["a"], "data": [["\\ud800"]]}'), table),
        "huge-integer-evidence": spec(
            write.format("t.json", good)
            + "\n"
            + write.format("t.evidence.json", '{"helper": "ols", "dof": 1' + "0" * 400 + ', "nobs": 1, "coef": []}'),
            table,
        ),
    }
    jobs = {name: submit(world, script_grant, body) for name, body in bodies.items()}
    assert run_worker(app) == len(jobs)
    settle(app, *jobs.values())
    views = {name: analyst_view(world, job_id) for name, job_id in jobs.items()}
    assert all(view == views["succeeds"] for view in views.values()), views
    assert views["succeeds"]["status"] == "held"
    items = {i["job"]["id"]: i for i in world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]}
    for name in ("lone-surrogate", "huge-integer-evidence"):
        raw = {row["item"]: row["value"] for row in items[jobs[name]]["raw"]["rows"]}
        assert "'t'" in raw["problems"], (name, raw["problems"])
