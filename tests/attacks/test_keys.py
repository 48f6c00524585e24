"""Keys are outputs: hidden or odd keys are refused, and a withheld row shows no key combination the
analyst could not know otherwise (declared domains, bins of declared bounds, or keys of released rows).

The strongest form of each release test: the same job on a neighbouring dataset (one person removed,
or moved to another cell) releases exactly the same form, so nothing released says where that person is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask

from sandbox.demo.seed import TEACHER_META
from tests.attacks.kit import Attack, assert_refused, granted
from tests.conftest import PUMS_META, World, auth, data_file, request_grant
from tests.datafiles import DEMO_DATA
from tests.sandbox.jobkit import approve, job_json, run_worker

CASES = {
    "hidden_predicate_key": Attack("pums", "SELECT COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY race <> 5", "group_key"),
    "hidden_plain_key": Attack("pums", "SELECT SUM(income) AS s FROM pums GROUP BY race", "group_key"),
    "nan_key": Attack("pums", "SELECT CAST('nan' AS DOUBLE) AS k, SUM(income) AS s FROM pums GROUP BY CAST('nan' AS DOUBLE)", "group_key"),
    "measure_threshold_key": Attack(
        "pums", "SELECT income > 50000 AS rich, COUNT(*) AS n FROM pums GROUP BY income > 50000", "measure_outside_aggregate"
    ),
    "teacher_case_key": Attack(
        "teacher_survey",
        "SELECT CASE WHEN age = 45 THEN 1 ELSE 0 END AS k, SUM(optimism) AS s FROM teacher_survey"
        " GROUP BY CASE WHEN age = 45 THEN 1 ELSE 0 END",
        "group_key",
    ),
}


@pytest.mark.parametrize("attack", CASES.values(), ids=CASES.keys())
def test_refused_before_anything_runs(attack: Attack, world: World, app: Flask) -> None:
    assert_refused(world, app, granted(world, attack.dataset), attack)


# -- the world of these tests: datasets (or a neighbour of one) under a policy where sensitive columns are dimensions

PUMS_CSV = data_file("smartnoise-sdk/PUMS_pid.csv")
TEACHER_CSV = DEMO_DATA / "teacher_survey.csv"
RACE5_PID = 313  # the one race-5 person of PUMS_pid: sex 1, age 40, income 56000
AGGREGATES = ["count", "sum", "avg", "count_distinct"]


def policy(dataset: str, columns: dict[str, str]) -> dict[str, Any]:
    return {"columns": {dataset: columns}, "aggregates": AGGREGATES, "job_kinds": ["query", "stats"], "release_mode": "auto"}


PUMS_DIMENSIONS = {"age": "dimension", "sex": "dimension", "educ": "dimension", "race": "dimension", "income": "dimension"}
PUMS_MEASURES = {**PUMS_DIMENSIONS, "income": "measure"}
TEACHER_DIMENSIONS = {
    "sex": "dimension",
    "age": "dimension",
    "marital_status": "dimension",
    "highest_education_level": "dimension",
    "source_of_stress": "dimension",
    "optimism": "dimension",
}


def grant_on(world: World, meta: dict[str, Any], path: Path, columns: dict[str, str]) -> str:
    uploaded = world.upload(world.steward, meta, path)
    assert uploaded.status_code == 201, uploaded.json
    grant = request_grant(world, [uploaded.json["id"]], kinds=["query", "stats"])
    assert grant.status_code == 201, grant.json
    approve(world, grant.json["id"], policy(meta["name"], columns))
    return str(grant.json["id"])


Change = Callable[[pd.DataFrame], pd.DataFrame]


def neighbour(tmp_path: Path, source: Path, meta: dict[str, Any], change: Change) -> tuple[dict[str, Any], Path]:
    """The dataset with one person removed or moved, under a name of its own."""
    frame = change(pd.read_csv(source))
    path = tmp_path / f"{meta['name']}_n.csv"
    frame.to_csv(path, index=False)
    return {**meta, "name": f"{meta['name']}_n"}, path


def run_job(world: World, app: Flask, grant_id: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit, run, and return the released form (the job must be released)."""
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": kind, "spec": spec})
    assert response.status_code in (201, 202), response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    assert job["status"] == "released", job
    result = world.client.get(f"/api/v1/jobs/{job['id']}/result", headers=auth(world.analyst))
    assert result.status_code == 200, result.json
    return dict(result.json)


def aggregates_of(form: dict[str, Any]) -> list[str]:
    return [c["name"] for c in form["columns"] if c["kind"] == "aggregate"]


def fully_withheld(form: dict[str, Any], row: dict[str, Any]) -> bool:
    return all(row[name] is None for name in aggregates_of(form))


# -- declared domains: every combination laid out, a withheld row looks like an empty one

NEIGHBOUR_CASES = {
    "pums_race_sex_without_the_race5_person": (
        PUMS_META,
        PUMS_CSV,
        PUMS_MEASURES,
        "SELECT race, sex, COUNT(*) AS n, SUM(income) AS s FROM {t} GROUP BY race, sex ORDER BY race, sex DESC",
        lambda f: f[f.pid != RACE5_PID],
    ),
    "pums_race5_person_to_the_other_sex": (
        PUMS_META,
        PUMS_CSV,
        PUMS_MEASURES,
        "SELECT race, sex, COUNT(*) AS n FROM {t} GROUP BY race, sex",
        lambda f: f.assign(sex=f.sex.where(f.pid != RACE5_PID, 0)),
    ),
    "pums_undeclared_age_by_race": (
        PUMS_META,
        PUMS_CSV,
        PUMS_MEASURES,
        "SELECT age, race, COUNT(*) AS n FROM {t} GROUP BY age, race",
        lambda f: f[f.pid != RACE5_PID],
    ),
    "pums_undeclared_age_alone": (
        PUMS_META,
        PUMS_CSV,
        PUMS_MEASURES,
        "SELECT age, COUNT(*) AS n FROM {t} GROUP BY age ORDER BY age DESC",
        lambda f: f[f.age != f.age.max()],  # the oldest people: fewer than 10 of them
    ),
    "pums_income_bands_by_race": (
        PUMS_META,
        PUMS_CSV,
        PUMS_DIMENSIONS,
        "SELECT race, FLOOR(income / 50000) AS band, COUNT(*) AS n FROM {t} GROUP BY race, FLOOR(income / 50000)",
        lambda f: f.assign(income=f.income.where(f.pid != RACE5_PID, 260000)),
    ),
    "teacher_stress_by_sex_moved": (
        TEACHER_META,
        TEACHER_CSV,
        TEACHER_DIMENSIONS,
        "SELECT source_of_stress, sex, COUNT(*) AS n FROM {t} GROUP BY source_of_stress, sex",
        lambda f: f.assign(source_of_stress=f.source_of_stress.where(f.teacher_id != 1879, 5)),  # sex 3, stress 2 -> 5
    ),
    "teacher_undeclared_age_by_sex": (
        TEACHER_META,
        TEACHER_CSV,
        TEACHER_DIMENSIONS,
        "SELECT age, sex, COUNT(*) AS n FROM {t} GROUP BY age, sex ORDER BY sex, age",
        lambda f: f[f.teacher_id != 1879],
    ),
}


@pytest.mark.parametrize("case", NEIGHBOUR_CASES.values(), ids=NEIGHBOUR_CASES.keys())
def test_a_neighbouring_dataset_releases_the_same_form(case: Any, world: World, app: Flask, tmp_path: Path) -> None:
    """One person removed or moved between withheld cells: the released form is the same, keys and order included."""
    meta, path, columns, sql, change = case
    moved_meta, moved_path = neighbour(tmp_path, path, meta, change)
    real = run_job(world, app, grant_on(world, meta, path, columns), "query", {"sql": sql.format(t=meta["name"])})
    moved = run_job(world, app, grant_on(world, moved_meta, moved_path, columns), "query", {"sql": sql.format(t=moved_meta["name"])})
    assert any(fully_withheld(real, row) for row in real["rows"]) or real["summary"]["withheld"] == 0
    assert {k: v for k, v in real.items() if k != "job_id"} == {k: v for k, v in moved.items() if k != "job_id"}


def test_declared_keys_show_every_combination(world: World, app: Flask) -> None:
    """race x sex: 12 rows whatever occurs; the race-5 person's cell and the empty race-5 cell look alike."""
    grant = grant_on(world, PUMS_META, PUMS_CSV, PUMS_MEASURES)
    form = run_job(world, app, grant, "query", {"sql": "SELECT race, sex, COUNT(*) AS n FROM pums GROUP BY race, sex"})
    assert [(r["race"], r["sex"]) for r in form["rows"]] == list(itertools.product(range(1, 7), (0, 1)))
    race5 = [r for r in form["rows"] if r["race"] == 5]
    assert [r["n"] for r in race5] == [None, None]
    notes = {(n["row"], n["column"]): n for n in form["notes"]}
    seen = [notes[(form["rows"].index(r), "n")] for r in race5]
    assert seen[0]["status"] == "withheld"
    assert {**seen[0], "row": 0} == {**seen[1], "row": 0}
    assert form["summary"]["rows"] == 12


def test_undeclared_keys_come_from_released_rows(world: World, app: Flask) -> None:
    """age x race: every age shown has a released cell, and is shown with every race."""
    grant = grant_on(world, PUMS_META, PUMS_CSV, PUMS_MEASURES)
    form = run_job(world, app, grant, "query", {"sql": "SELECT age, race, COUNT(*) AS n FROM pums GROUP BY age, race"})
    ages = {r["age"] for r in form["rows"]}
    assert ages
    for age in ages:
        rows = [r for r in form["rows"] if r["age"] == age]
        assert sorted(r["race"] for r in rows) == list(range(1, 7))
        assert any(r["n"] is not None for r in rows)
    assert 40 in ages  # the race-5 person's age is shown: other people of 40 were released, so (40, 5) is laid out


def test_bins_of_a_sensitive_column_are_laid_out(world: World, app: Flask) -> None:
    """Income bands of 50,000 over the declared 0..500,000: 11 bands per race, whatever occurs."""
    grant = grant_on(world, PUMS_META, PUMS_CSV, PUMS_DIMENSIONS)
    sql = "SELECT race, FLOOR(income / 50000) AS band, COUNT(*) AS n FROM pums GROUP BY race, FLOOR(income / 50000) ORDER BY race, band"
    form = run_job(world, app, grant, "query", {"sql": sql})
    assert [(r["race"], r["band"]) for r in form["rows"]] == [(race, float(band)) for race in range(1, 7) for band in range(11)]
    assert all(r["n"] is None for r in form["rows"] if r["race"] == 5)


SENSITIVE_KEYS = {
    "pums_raw_income": Attack("pums", "SELECT income, COUNT(*) AS n FROM pums GROUP BY income", "sensitive_key"),
    "pums_income_identity": Attack("pums", "SELECT income + 0 AS i, COUNT(*) AS n FROM pums GROUP BY income + 0", "sensitive_key"),
    "pums_narrow_bins": Attack(
        "pums", "SELECT FLOOR(income / 1000) AS b, COUNT(*) AS n FROM pums GROUP BY FLOOR(income / 1000)", "sensitive_key"
    ),
    "pums_round_is_not_a_bin": Attack(
        "pums", "SELECT ROUND(income, -4) AS b, COUNT(*) AS n FROM pums GROUP BY ROUND(income, -4)", "sensitive_key"
    ),
    "teacher_raw_optimism": Attack(
        "teacher_survey", "SELECT sex, optimism, COUNT(*) AS n FROM teacher_survey GROUP BY sex, optimism", "sensitive_key"
    ),
}


@pytest.mark.parametrize("attack", SENSITIVE_KEYS.values(), ids=SENSITIVE_KEYS.keys())
def test_a_sensitive_column_is_never_grouped_by_its_raw_values(attack: Attack, world: World, app: Flask) -> None:
    pums = attack.dataset == "pums"
    meta, path, columns = (PUMS_META, PUMS_CSV, PUMS_DIMENSIONS) if pums else (TEACHER_META, TEACHER_CSV, TEACHER_DIMENSIONS)
    assert_refused(world, app, grant_on(world, meta, path, columns), attack)


@pytest.mark.parametrize(
    ("dataset", "spec"),
    [
        ("pums", {"op": "crosstab", "dataset": "pums", "index": ["income"], "columns": ["sex"]}),
        ("teacher_survey", {"op": "pivot", "dataset": "teacher_survey", "index": ["optimism"], "values": ["age"], "aggfunc": ["count"]}),
    ],
    ids=["pums_crosstab_income", "teacher_pivot_optimism"],
)
def test_statistics_refuse_a_sensitive_dimension_without_a_domain(dataset: str, spec: dict[str, Any], world: World, app: Flask) -> None:
    meta, path = (PUMS_META, PUMS_CSV) if dataset == "pums" else (TEACHER_META, TEACHER_CSV)
    columns = {**(PUMS_DIMENSIONS if dataset == "pums" else TEACHER_DIMENSIONS), "age": "measure"}
    grant = grant_on(world, meta, path, columns)
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant, "kind": "stats", "spec": spec})
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["rule"] == "sensitive_key"
    assert run_worker(app) == 0


@pytest.mark.parametrize(
    ("meta", "path", "columns", "index", "column", "levels"),
    [
        (PUMS_META, PUMS_CSV, PUMS_MEASURES, "race", "sex", (list(range(1, 7)), [0, 1])),
        (TEACHER_META, TEACHER_CSV, TEACHER_DIMENSIONS, "marital_status", "sex", (list(range(1, 9)), [1, 2, 3])),
    ],
    ids=["pums_race_sex", "teacher_marital_sex"],
)
def test_a_crosstab_with_margins_lays_out_every_combination(
    meta: dict[str, Any], path: Path, columns: dict[str, str], index: str, column: str, levels: Any, world: World, app: Flask
) -> None:
    grant = grant_on(world, meta, path, columns)
    spec = {"op": "crosstab", "dataset": meta["name"], "index": [index], "columns": [column], "margins": True}
    form = run_job(world, app, grant, "stats", spec)
    rows, cols = levels
    expected = {(r, c, "") for r in rows for c in cols} | {(r, None, column) for r in rows} | {(None, c, index) for c in cols}
    expected |= {(None, None, f"{index},{column}")}
    shown = [(r[index], r[column], r["total_over"]) for r in form["rows"]]
    assert len(shown) == len(expected)
    assert set(shown) == expected
    assert form["summary"]["rows"] == len(expected)
