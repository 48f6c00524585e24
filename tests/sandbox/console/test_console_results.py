"""A released result in the console: the table, the chart's data and the CSV and XLSX downloads.

Each shows the numbers ``GET /api/v1/jobs/{id}/result`` gives the same analyst; every withheld cell is
marked and carries no value in the page, the chart, the CSV or the workbook, even when the row handed to
the console holds one. Only a released result downloads; another analyst's job is a 404.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient

from sandbox.api.schemas import ResultColumn, ResultOut
from sandbox.console.analyst import results
from tests.conftest import World, auth
from tests.sandbox.console.kit import API, People, signed_in_client
from tests.sandbox.jobkit import approve, run_worker, submit

RACE_SQL = "SELECT race, COUNT(*) AS n FROM pums GROUP BY race"  # races 5 and 6 have too few people: withheld


@pytest.fixture
def queued(world: World, grant: dict[str, Any]) -> str:
    approve(world, grant["id"])
    response = submit(world, grant["id"], RACE_SQL)
    assert response.status_code == 202, response.json
    return str(response.json["id"])


@pytest.fixture
def released(app: Flask, world: World, queued: str) -> dict[str, Any]:
    """The released job's result as the API gives it to the analyst (two withheld cells)."""
    run_worker(app)
    response = world.client.get(f"{API}/jobs/{queued}/result", headers=auth(world.analyst))
    assert response.status_code == 200, response.json
    assert response.json["summary"]["withheld"] == 2
    return dict(response.json)


def text(response: Any, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    return str(response.get_data(as_text=True))


def shown_rows(page: str) -> list[list[str]]:
    body = re.search(r'<table class="list result"[^>]*>.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body is not None
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


def test_the_released_table_shows_the_apis_numbers_and_marks_the_withheld(analyst: FlaskClient, released: dict[str, Any]) -> None:
    page = text(analyst.get(f"/jobs/{released['job_id']}"))
    assert 'data-withheld="2"' in page
    rows = shown_rows(page)
    assert len(rows) == len(released["rows"])
    withheld = {(note["row"], note["column"]) for note in released["notes"] if note["status"] == "withheld"}
    for index, (row, api) in enumerate(zip(rows, released["rows"], strict=True)):
        assert row[0].strip() == str(api["race"])
        if (index, "n") in withheld:
            assert "已抑制" in row[1]
            assert not re.search(r"\d", row[1])
        else:
            assert row[1].strip() == f"{api['n']:,}"
    assert "已被输出管控抑制" in page  # the mark explained under the table
    assert page.count('data-mark="withheld"') == 2 + 1  # two cells, one explanation


def test_the_chart_has_gaps_and_markers_for_withheld_cells_never_values(analyst: FlaskClient, released: dict[str, Any]) -> None:
    page = text(analyst.get(f"/jobs/{released['job_id']}"))
    (attribute,) = re.findall(r"data-chart='([^']*)'", page)
    chart = json.loads(attribute.replace("&#39;", "'").replace("&amp;", "&"))
    assert chart["locale"] == "ZH"
    assert chart["categories"] == [str(row["race"]) for row in released["rows"]]
    (series,) = chart["series"]
    assert series["data"] == [row["n"] for row in released["rows"]]
    gaps = [index for index, value in enumerate(series["data"]) if value is None]
    assert len(gaps) == 2
    assert chart["withheld"] == [[index, "n"] for index in gaps]
    assert '"EN"' in text(analyst.get(f"/jobs/{released['job_id']}?lang=en"))
    assert "/static/vendor/echarts-6.1.0/echarts.min.js" in page
    assert "/static/result-chart.js" in page
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []  # the CSP runs no inline script


def test_the_csv_download_has_a_bom_empty_withheld_cells_and_a_marks_column(analyst: FlaskClient, released: dict[str, Any]) -> None:
    response = analyst.get(f"/jobs/{released['job_id']}/result.csv?lang=en")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert lines[0] == ["race", "n", "marks"]
    for line, api in zip(lines[1 : 1 + len(released["rows"])], released["rows"], strict=True):
        if api["n"] is None:
            assert line == [str(api["race"]), "", "n: withheld"]
        else:
            assert line == [str(api["race"]), str(api["n"]), ""]
    assert any(line and line[0].startswith("withheld: Withheld by output control") for line in lines)


def test_the_xlsx_download_has_the_result_and_its_marks(analyst: FlaskClient, released: dict[str, Any]) -> None:
    response = analyst.get(f"/jobs/{released['job_id']}/result.xlsx")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    assert book.sheetnames == ["结果", "标注"]
    values = [list(row) for row in book["结果"].iter_rows(values_only=True)]
    assert values[0] == ["race", "n"]
    assert values[1:] == [[row["race"], row["n"]] for row in released["rows"]]
    marks = [list(row) for row in book["标注"].iter_rows(values_only=True)][1:]
    withheld_rows = [index + 1 for index, row in enumerate(released["rows"]) if row["n"] is None]
    assert [(mark[0], mark[1], mark[2]) for mark in marks] == [(row, "n", "已抑制") for row in withheld_rows]


def test_only_a_released_result_downloads_and_only_for_its_analyst(app: Flask, analyst: FlaskClient, people: People, queued: str) -> None:
    for suffix in ("csv", "xlsx"):
        page = text(analyst.get(f"/jobs/{queued}/result.{suffix}"), status=409)
        assert "只有已发布的结果才能下载" in page
    run_worker(app)
    other = signed_in_client(app, people.other_analyst)
    for suffix in ("csv", "xlsx"):
        assert analyst.get(f"/jobs/{queued}/result.{suffix}").status_code == 200
        assert other.get(f"/jobs/{queued}/result.{suffix}").status_code == 404
    for role in ("steward", "auditor"):
        assert signed_in_client(app, getattr(people, role)).get(f"/jobs/{queued}/result.csv").status_code == 403


def test_the_job_page_reloads_whole_when_the_job_it_watches_finishes(app: Flask, analyst: FlaskClient, queued: str) -> None:
    watching = analyst.get(f"/jobs/{queued}", headers={"HX-Request": "true"})
    assert "HX-Refresh" not in watching.headers
    run_worker(app)
    finished = analyst.get(f"/jobs/{queued}", headers={"HX-Request": "true"})
    assert finished.headers["HX-Refresh"] == "true"
    assert 'data-status="released"' in finished.get_data(as_text=True)


# --- the conversion, on results the worker would not make ---------------------------------------------

SECRET = 987654321  # a value a withheld cell's row holds, which must reach no output


def crafted(notes: list[dict[str, Any]], rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> ResultOut:
    shown = [ResultColumn(name=name, kind=kind, type=kind_type) for name, kind, kind_type in columns]
    return ResultOut(job_id="j", columns=shown, rows=rows, notes=notes, summary={})


WITHHELD_NOTE = {"row": 0, "column": "n", "status": "withheld", "rule": "output_control", "reason": "withheld by output control"}


@pytest.mark.parametrize("status", ["withheld", "suppress", "block"])
def test_a_withheld_cell_never_carries_its_rows_value(app: Flask, status: str) -> None:
    result = crafted(
        [{**WITHHELD_NOTE, "status": status}], [{"g": "a", "n": SECRET}], [("g", "group_key", "string"), ("n", "aggregate", "int64")]
    )
    with app.test_request_context("/?lang=en"):
        table = results.result_table(result)
        chart = results.chart_of(table)
        assert table.rows[0][1].value is None
        assert chart is not None
        assert chart["series"][0]["data"] == [None]
        csv_text = results.csv_bytes(table).decode("utf-8-sig")
        workbook = results.xlsx_bytes(table)
    assert str(SECRET) not in csv_text
    assert str(SECRET) not in json.dumps(chart)
    values = [v for row in openpyxl.load_workbook(io.BytesIO(workbook))["Result"].iter_rows(values_only=True) for v in row]
    assert SECRET not in values


def test_rounded_and_noised_cells_are_marked(app: Flask) -> None:
    notes = [
        {"row": -1, "column": "*", "status": "pass", "rule": "rounding", "reason": "rounded to the nearest multiple of 5"},
        {"row": 0, "column": "m", "status": "pass", "rule": "dp", "reason": "noise scale 2; |error| <= 6 with 95% probability"},
    ]
    result = crafted(
        notes, [{"g": "a", "n": 10, "m": 3.5}], [("g", "group_key", "string"), ("n", "aggregate", "int64"), ("m", "aggregate", "double")]
    )
    with app.test_request_context("/?lang=en"):
        table = results.result_table(result)
    group, count, mean = table.rows[0]
    assert group.marks == ()
    assert count.marks == (results.Mark.ROUNDED,)
    assert mean.marks == (results.Mark.NOISED, results.Mark.ROUNDED)
    assert mean.detail == "noise scale 2; |error| <= 6 with 95% probability"
    assert table.marks == [results.Mark.ROUNDED, results.Mark.NOISED]
    assert table.table_notes == ["rounded to the nearest multiple of 5"]


@pytest.mark.parametrize("formula", ['=HYPERLINK("http://evil.example")', "+1+1", "-2+3", "@SUM(A1)"])
def test_a_text_cell_never_becomes_a_formula(app: Flask, formula: str) -> None:
    result = crafted([], [{"g": formula, "n": 12}], [("g", "group_key", "string"), ("n", "aggregate", "int64")])
    with app.test_request_context("/?lang=en"):
        table = results.result_table(result)
        lines = list(csv.reader(io.StringIO(results.csv_bytes(table).decode("utf-8-sig"))))
        sheet = openpyxl.load_workbook(io.BytesIO(results.xlsx_bytes(table)))["Result"]
    assert lines[1][0] == "'" + formula
    assert sheet["A2"].data_type == "s"
    assert sheet["A2"].value == "'" + formula


def test_a_dp_results_cells_are_marked_noised_with_the_apis_error_bound(
    app: Flask, world: World, analyst: FlaskClient, grant: dict[str, Any]
) -> None:
    dp = {"epsilon_total": 1.0, "epsilon_per_job": 1.0, "delta_total": 0.0, "max_rows_per_unit": 1}
    approve(world, grant["id"], {"columns": {"pums": {"race": "dimension"}}, "aggregates": ["count"], "job_kinds": ["query"], "dp": dp})
    response = submit(world, grant["id"], RACE_SQL, epsilon=0.5)
    assert response.status_code == 202, response.json
    run_worker(app)
    api = world.client.get(f"{API}/jobs/{response.json['id']}/result", headers=auth(world.analyst)).json
    page = text(analyst.get(f"/jobs/{response.json['id']}?lang=en"))
    noised = re.findall(r'<td class="num marked" data-mark="noised" title="([^"]*)">', page)
    assert len(noised) == len(api["rows"]) == 6  # every cell of the declared domain, none withheld
    assert noised == [note["reason"].replace("<", "&lt;").replace(">", "&gt;") for note in api["notes"] if note["rule"] == "dp"]
    bounds = [f"±{error['bound95']:,.3f}".rstrip("0").rstrip(".") for error in api["summary"]["dp"]["errors"]["n"]]
    assert re.findall(r'data-field="bound">([^<]*)<', page) == bounds
    assert "Noised: differential-privacy noise was added" in page
    assert 'data-withheld="0"' in page
    lines = list(csv.reader(io.StringIO(analyst.get(f"/jobs/{response.json['id']}/result.csv?lang=en").get_data(as_text=True))))
    assert [line[-1] for line in lines[1:7]] == [f"n: noised ±{error['bound95']:g}" for error in api["summary"]["dp"]["errors"]["n"]]


def test_a_dry_runs_cell_flagged_for_review_keeps_its_mock_value_and_is_marked(app: Flask) -> None:
    note = {"row": 0, "column": "n", "status": "review", "rule": "dominance", "reason": "a few units dominate this cell"}
    result = crafted([note], [{"g": "a", "n": 40}], [("g", "group_key", "string"), ("n", "aggregate", "int64")])
    with app.test_request_context("/?lang=en"):
        table = results.result_table(result)
    cell = table.rows[0][1]
    assert cell.value == 40
    assert cell.marks == (results.Mark.FLAGGED,)
    assert cell.detail == "a few units dominate this cell"
    assert table.marks == [results.Mark.FLAGGED]
