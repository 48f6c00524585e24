"""Combinations of releases: each attack runs jobs through the API with a worker under ``release_mode: auto``
(or held, then released by an auditor) and asserts the target's value cannot be computed from what was
released. The release audit (``policies.audit``) compares populations as bitmaps across every job,
kind and organisation on the dataset version.

Targets: the one race-5 person of PUMS_pid (income 56000), and the one teacher of the survey with a
given (sex, age, marital status, education), read from the data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pyarrow.csv as pacsv
import pytest
from flask import Flask

from sandbox.demo.seed import TEACHER_META
from tests.attacks.kit import RACE5_INCOME
from tests.conftest import PUMS_META, World, auth, request_grant
from tests.datafiles import DEMO_DATA, data_file
from tests.sandbox.jobkit import approve, job_json, run_worker, submit

PUMS_COLUMNS = {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "income": "measure"}
TEACHER_COLUMNS = {
    "sex": "dimension",
    "age": "dimension",
    "marital_status": "dimension",
    "highest_education_level": "dimension",
    "optimism": "measure",
}


def policy(dataset: str, mode: str = "auto") -> dict[str, Any]:
    columns = PUMS_COLUMNS if dataset == "pums" else TEACHER_COLUMNS
    return {"columns": {dataset: columns}, "aggregates": ["count", "sum", "avg"], "job_kinds": ["query", "stats"], "release_mode": mode}


@dataclass(frozen=True)
class Target:
    dataset: str
    measure: str
    predicate: str  # isolates the target: exactly one unit
    value: float


def pums_target() -> Target:
    return Target("pums", "income", "race = 5", RACE5_INCOME)


def teacher_target() -> Target:
    """The first teacher alone in their (sex, age, marital status, education) combination, with their optimism."""
    rows = [r for r in pacsv.read_csv(DEMO_DATA / "teacher_survey.csv").to_pylist() if r["optimism"] is not None]
    keys = ("sex", "age", "marital_status", "highest_education_level")
    counts: dict[tuple[Any, ...], int] = {}
    for row in pacsv.read_csv(DEMO_DATA / "teacher_survey.csv").to_pylist():
        counts[tuple(row[k] for k in keys)] = counts.get(tuple(row[k] for k in keys), 0) + 1
    alone = next(r for r in rows if counts[tuple(r[k] for k in keys)] == 1)
    predicate = " AND ".join(f"{k} = {alone[k]}" for k in keys)
    return Target("teacher_survey", "optimism", f"({predicate})", float(alone["optimism"]))


TARGETS = {"pums": pums_target, "teacher_survey": teacher_target}


def upload(world: World, dataset: str) -> str:
    pums = (PUMS_META, data_file("smartnoise-sdk/PUMS_pid.csv"))
    meta, path = pums if dataset == "pums" else (TEACHER_META, DEMO_DATA / "teacher_survey.csv")
    uploaded = world.upload(world.steward, meta, path)
    assert uploaded.status_code == 201, uploaded.json
    return str(uploaded.json["id"])


def grant(world: World, dataset_id: str, dataset: str, token: str | None = None, mode: str = "auto") -> str:
    response = request_grant(world, [dataset_id], kinds=["query", "stats"], token=token)
    assert response.status_code == 201, response.json
    approve(world, response.json["id"], policy(dataset, mode))
    return str(response.json["id"])


def run(world: World, app: Flask, grant_id: str, sql: str, token: str | None = None, kind: str = "query") -> str:
    if kind == "query":
        response = submit(world, grant_id, sql, token=token)
    else:
        body = {"grant_id": grant_id, "kind": kind, "spec": sql}
        response = world.client.post("/api/v1/jobs", headers=auth(token or world.analyst), json=body)
    assert response.status_code in (201, 202), response.json
    run_worker(app)
    return str(response.json["id"])


def numbers(world: World, job_id: str, token: str | None = None) -> list[float]:
    """Every number the analyst received from the job (none unless released)."""
    job = job_json(world, job_id, token=token)
    if job["status"] != "released":
        return []
    result = world.client.get(f"/api/v1/jobs/{job_id}/result", headers=auth(token or world.analyst)).json
    aggregates = [c["name"] for c in result["columns"] if c["kind"] == "aggregate"]
    return [float(row[c]) for row in result["rows"] for c in aggregates if row[c] is not None]


def derivable(released: list[float], value: float) -> bool:
    """Whether ``value`` is a +-1 combination of at most three released numbers (the attacks' own arithmetic)."""
    for size in (1, 2, 3):
        for chosen in itertools.combinations(released, size):
            for signs in itertools.product((1, -1), repeat=size):
                if abs(sum(s * x for s, x in zip(signs, chosen, strict=True)) - value) < 1e-6:
                    return True
    return False


@pytest.mark.parametrize("dataset", ["pums", "teacher_survey"])
def test_a_plus_b_minus_c_over_three_releases(world: World, app: Flask, dataset: str) -> None:
    """A = X + t, B = Y, C = X + Y, every pair far apart: A + B - C is t's value. C is withheld."""
    target = TARGETS[dataset]()
    grant_id = grant(world, upload(world, dataset), dataset)
    p, m = target.predicate, target.measure
    queries = [
        f"SELECT SUM({m}) AS s FROM {dataset} WHERE (age < 40 AND NOT {p}) OR {p}",  # noqa: S608
        f"SELECT SUM({m}) AS s FROM {dataset} WHERE age >= 40 AND sex = 1 AND NOT {p}",  # noqa: S608
        f"SELECT SUM({m}) AS s FROM {dataset} WHERE NOT {p} AND (age < 40 OR sex = 1)",  # noqa: S608
    ]
    jobs = [run(world, app, grant_id, sql) for sql in queries]
    a, b, c = (numbers(world, job) for job in jobs)
    assert a, "the first release is harmless alone"
    assert b, "so is the second"
    assert c == [], "the third completes the combination"
    assert not derivable(a + b + c, target.value)


@pytest.mark.parametrize("order", ["total_first", "partition_first"])
def test_partition_complement(world: World, app: Flask, order: str) -> None:
    """The total, and a partition of everyone but the target (or the reverse): the difference is the target's income."""
    grant_id = grant(world, upload(world, "pums"), "pums")
    everyone, everyone_but = "FROM pums", "FROM pums WHERE race <> 5"
    total, by_sex = "SELECT SUM(income) AS s {}", "SELECT sex, SUM(income) AS s {} GROUP BY sex"
    if order == "total_first":
        first, second = total.format(everyone), by_sex.format(everyone_but)
    else:
        first, second = by_sex.format(everyone), total.format(everyone_but)
    jobs = [run(world, app, grant_id, sql) for sql in (first, second)]
    released = [x for job in jobs for x in numbers(world, job)]
    assert numbers(world, jobs[0]), "the first release is harmless alone"
    assert not derivable(released, RACE5_INCOME)


def test_a_suppressed_cell_is_not_recovered_from_an_earlier_total(world: World, app: Flask) -> None:
    """The total, then income by race: race 5 (one person) is suppressed, and the other races would give it away.

    Over races 1, 2 and 5, so that race 5 is the one small cell (smaller races would be suppressed too).
    """
    grant_id = grant(world, upload(world, "pums"), "pums")
    total = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums WHERE race IN (1, 2, 5)")
    by_race = run(world, app, grant_id, "SELECT race, SUM(income) AS s FROM pums WHERE race IN (1, 2, 5) GROUP BY race")
    assert numbers(world, total)
    assert not derivable([sum(numbers(world, by_race)), *numbers(world, total)], RACE5_INCOME)


def test_keys_that_differ_cover_the_same_people(world: World, app: Flask) -> None:
    """Cells are compared by population, not key: by sex, then by an expression key over everyone but the target."""
    grant_id = grant(world, upload(world, "pums"), "pums")
    first = run(world, app, grant_id, "SELECT sex, SUM(income) AS s FROM pums GROUP BY sex")
    second = run(world, app, grant_id, "SELECT sex + 10 AS k, SUM(income) AS s FROM pums WHERE race <> 5 GROUP BY sex + 10")
    assert not derivable(numbers(world, first) + numbers(world, second), RACE5_INCOME)
    assert len(numbers(world, second)) == 1  # the other sex's cell is the same people: released


def test_across_organisations(world: World, app: Flask) -> None:
    """Enterprise A asks the total; enterprise B, on its own grant, everyone but the target."""
    dataset_id = upload(world, "pums")
    mine, theirs = grant(world, dataset_id, "pums"), grant(world, dataset_id, "pums", token=world.other_analyst)
    a = run(world, app, mine, "SELECT SUM(income) AS s FROM pums")
    b = run(world, app, theirs, "SELECT SUM(income) AS s FROM pums WHERE race <> 5", token=world.other_analyst)
    assert numbers(world, a)
    assert numbers(world, b, token=world.other_analyst) == []
    assert not derivable(numbers(world, a) + numbers(world, b, token=world.other_analyst), RACE5_INCOME)


def test_across_kinds(world: World, app: Flask) -> None:
    """A query's total, then a stats pivot of income by race over everyone but the target."""
    grant_id = grant(world, upload(world, "pums"), "pums")
    total = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums")
    spec = {"op": "pivot", "dataset": "pums", "index": ["sex"], "values": ["income"], "aggfunc": ["sum"]}
    pivot = run(world, app, grant_id, spec, kind="stats")  # type: ignore[arg-type]
    by_sex = numbers(world, pivot)
    assert numbers(world, total)
    assert len(by_sex) == 2, "the pivot over everyone is the total split: released"
    query = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums WHERE race <> 5")
    assert not derivable(numbers(world, total) + by_sex + numbers(world, query), RACE5_INCOME)


def test_held_outputs_are_audited_when_released(world: World, app: Flask) -> None:
    """Both jobs held; the auditor releases the second first, then the first: the audit runs at each release,
    against what was released by then, and the reviewer sees the finding."""
    grant_id = grant(world, upload(world, "pums"), "pums", mode="always_review")
    total = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums")
    rest = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums WHERE race <> 5")
    assert [job_json(world, j)["status"] for j in (total, rest)] == ["held", "held"]
    release = {"decision": "release", "reason": "aggregate over many people"}
    assert world.client.post(f"/api/v1/reviews/{rest}", headers=auth(world.auditor), json=release).json["status"] == "released"
    queue = world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"]
    assert [i["job"]["id"] for i in queue] == [total]
    assert queue[0]["findings"] == []  # audited when held: nothing was released yet
    decided = world.client.post(f"/api/v1/reviews/{total}", headers=auth(world.auditor), json=release)
    assert decided.status_code == 200, decided.json
    assert decided.json["status"] == "blocked"
    assert not derivable(numbers(world, total) + numbers(world, rest), RACE5_INCOME)


def test_the_reviewer_sees_the_finding_before_deciding(world: World, app: Flask) -> None:
    grant_id = grant(world, upload(world, "pums"), "pums", mode="always_review")
    total = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums")
    release = {"decision": "release", "reason": "aggregate over many people"}
    world.client.post(f"/api/v1/reviews/{total}", headers=auth(world.auditor), json=release)
    rest = run(world, app, grant_id, "SELECT SUM(income) AS s FROM pums WHERE race <> 5")
    item = next(i for i in world.client.get("/api/v1/reviews", headers=auth(world.auditor)).json["items"] if i["job"]["id"] == rest)
    assert [(f["rule"], f["earlier_job_id"]) for f in item["findings"]] == [("pair", total)]
    assert world.client.post(f"/api/v1/reviews/{rest}", headers=auth(world.auditor), json=release).json["status"] == "blocked"
    assert not derivable(numbers(world, total) + numbers(world, rest), RACE5_INCOME)
    result = world.client.get(f"/api/v1/jobs/{rest}", headers=auth(world.analyst)).json
    assert "pair" not in str(result)  # the analyst sees no rule...
    assert total not in str(result)  # ...and no earlier job
