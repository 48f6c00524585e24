"""Linked tables: releases from the same dimensions combine (a margin released later, counts from sum / mean).

Within one release the linked-cells rule (``policies.linked``) and secondary suppression hold; across
releases the release-time audit over population bitmaps (``policies.audit``) withholds or blocks what
would combine with earlier releases. Each test reads only what was released and works out what an
analyst could.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from sandbox.demo.seed import TEACHER_META
from tests.attacks.test_keys import PUMS_CSV, PUMS_MEASURES, TEACHER_CSV, TEACHER_DIMENSIONS, grant_on
from tests.conftest import PUMS_META, World, auth
from tests.sandbox.jobkit import job_json, run_worker

K = 10  # the policies' threshold (the default)

Cells = dict[tuple[Any, ...], float | None]


def run(world: World, app: Flask, grant_id: str, kind: str, spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), json={"grant_id": grant_id, "kind": kind, "spec": spec})
    assert response.status_code in (201, 202), response.json
    run_worker(app)
    job = job_json(world, response.json["id"])
    if job["status"] != "released":
        return str(job["status"]), []
    return "released", list(world.client.get(f"/api/v1/jobs/{job['id']}/result", headers=auth(world.analyst)).json["rows"])


def solved(cells: Cells, lines: dict[tuple[Any, ...], tuple[float | None, list[tuple[Any, ...]]]]) -> Cells:
    """What the analyst works out: a line's margin minus its known cells, wherever one cell is unknown, to a fixpoint."""
    known = dict(cells)
    changed = True
    while changed:
        changed = False
        for total, members in lines.values():
            unknown = [c for c in members if known.get(c) is None]
            if total is not None and len(unknown) == 1:
                known[unknown[0]] = total - sum(float(known[c] or 0) for c in members if c != unknown[0])
                changed = True
    return known


def small_residuals(known: Cells, lines: dict[tuple[Any, ...], tuple[float | None, list[tuple[Any, ...]]]]) -> list[float]:
    """Lines whose unknown cells are pinned to a total between 1 and k - 1: a small count disclosed."""
    found = []
    for total, members in lines.values():
        unknown = [c for c in members if known.get(c) is None]
        residual = None if total is None else total - sum(float(known[c] or 0) for c in members if c not in unknown)
        if unknown and residual is not None and 0 < residual < K:
            found.append(residual)
    return found


MARGIN_LATER = {
    "pums_sex_margin_of_three_races": (
        PUMS_META,
        PUMS_CSV,
        PUMS_MEASURES,
        "SELECT race, sex, COUNT(*) AS n FROM pums WHERE race IN (1, 2, 5) GROUP BY race, sex",
        "SELECT sex, COUNT(*) AS n FROM pums WHERE race IN (1, 2, 5) GROUP BY sex",
        ("race", "sex"),
        "sex",
        lambda cell: cell[0] in (1, 2, 5),
    ),
    "teacher_marital_margin": (
        TEACHER_META,
        TEACHER_CSV,
        TEACHER_DIMENSIONS,
        "SELECT marital_status, sex, COUNT(*) AS n FROM teacher_survey WHERE marital_status IN (1, 2) GROUP BY marital_status, sex",
        "SELECT marital_status, COUNT(*) AS n FROM teacher_survey WHERE marital_status IN (1, 2) GROUP BY marital_status",
        ("marital_status", "sex"),
        "marital_status",
        lambda cell: cell[0] in (1, 2),
    ),
}


@pytest.mark.parametrize("case", MARGIN_LATER.values(), ids=MARGIN_LATER.keys())
def test_a_margin_released_later_gives_back_no_withheld_cell(case: Any, world: World, app: Flask) -> None:
    meta, path, columns, table_sql, margin_sql, keys, by, selected = case
    grant = grant_on(world, meta, path, columns)
    status, table = run(world, app, grant, "query", {"sql": table_sql})
    assert status == "released"
    # The analyst's own filter empties the laid-out cells outside it: those are known zeros.
    cells: Cells = {tuple(r[k] for k in keys): r["n"] if selected(tuple(r[k] for k in keys)) else 0 for r in table}
    withheld = {c for c, v in cells.items() if v is None}
    assert withheld, "the table has withheld cells to protect"
    status, margin = run(world, app, grant, "query", {"sql": margin_sql})
    position = keys.index(by)
    lines = {(r[by],): (r["n"] if status == "released" else None, [c for c in cells if c[position] == r[by]]) for r in margin}
    known = solved(cells, lines)
    assert not [c for c in withheld if known.get(c) is not None], "a withheld cell was worked out from the later margin"


def crosstab_and_sums(world: World, app: Flask) -> tuple[Cells, dict[tuple[Any, ...], tuple[float | None, list[tuple[Any, ...]]]], Cells]:
    """race x sex with margins (counts), then the sums and means of the same cells as a query without margins."""
    grant = grant_on(world, PUMS_META, PUMS_CSV, PUMS_MEASURES)
    spec = {"op": "crosstab", "dataset": "pums", "index": ["race"], "columns": ["sex"], "margins": True}
    status, rows = run(world, app, grant, "stats", spec)
    assert status == "released"
    cells: Cells = {(r["race"], r["sex"]): r["count"] for r in rows if r["total_over"] == ""}
    assert any(v is None for v in cells.values())
    lines: dict[tuple[Any, ...], tuple[float | None, list[tuple[Any, ...]]]] = {}
    for r in rows:
        if r["total_over"] == "sex":
            lines[("race", r["race"])] = (r["count"], [c for c in cells if c[0] == r["race"]])
        elif r["total_over"] == "race":
            lines[("sex", r["sex"])] = (r["count"], [c for c in cells if c[1] == r["sex"]])
    sql = "SELECT race, sex, SUM(income) AS s, AVG(income) AS a FROM pums GROUP BY race, sex"
    status, sums = run(world, app, grant, "query", {"sql": sql})
    assert status in ("released", "blocked")  # blocked by the release audit: nothing to derive from
    derived: Cells = {(r["race"], r["sex"]): round(r["s"] / r["a"]) for r in sums if r["s"] is not None and r["a"]}
    return cells, lines, derived


def test_a_crosstab_with_margins_alone_pins_no_small_count(world: World, app: Flask) -> None:
    """Secondary suppression holds within the one release: no line leaves its withheld cells a total below k."""
    grant = grant_on(world, PUMS_META, PUMS_CSV, PUMS_MEASURES)
    spec = {"op": "crosstab", "dataset": "pums", "index": ["race"], "columns": ["sex"], "margins": True}
    status, rows = run(world, app, grant, "stats", spec)
    assert status == "released"
    cells: Cells = {(r["race"], r["sex"]): r["count"] for r in rows if r["total_over"] == ""}
    lines = {("race", r["race"]): (r["count"], [c for c in cells if c[0] == r["race"]]) for r in rows if r["total_over"] == "sex"}
    lines |= {("sex", r["sex"]): (r["count"], [c for c in cells if c[1] == r["sex"]]) for r in rows if r["total_over"] == "race"}
    assert small_residuals(solved(cells, lines), lines) == []


def test_counts_from_sum_over_mean_released_later_pin_no_small_count(world: World, app: Flask) -> None:
    """The complements of the crosstab get their counts back as sum / mean; the margins then pin the primaries."""
    cells, lines, derived = crosstab_and_sums(world, app)
    known = solved({c: v if v is not None else derived.get(c) for c, v in cells.items()}, lines)
    assert small_residuals(known, lines) == []
    assert not [c for c, v in cells.items() if v is None and known.get(c) is not None and known[c] < K]  # type: ignore[operator]
