"""The analyst's grants, SQL editor and statistics form: what the API shows, accepts and refuses, in the page.

The validation as you type, the dry run and the submission are compared with the API's own answers for
the same person (the same rule and column, the same columns of mock rows, the same job); refusals are
pages with the API's status, never a 500. Another organisation's grant is a 404, another role a 403, and
every POST needs its CSRF token.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobs.query.model import QueryRule
from jobs.stats.values import StatsRule
from sandbox.console.analyst.submission import RULE_LABELS
from tests.conftest import PUMS_POLICY, World, auth, request_grant
from tests.sandbox.console.kit import API, People, csrf_of, signed_in_client
from tests.sandbox.jobkit import approve, events, run_worker

STATS_POLICY = {**PUMS_POLICY, "aggregates": ["count", "sum", "avg", "quantile"], "job_kinds": ["query", "stats"]}
RACE_SQL = "SELECT race, COUNT(*) AS n FROM pums GROUP BY race"
ROW_LEVEL_SQL = "SELECT income FROM pums"


@pytest.fixture
def grant_id(world: World, pums: dict[str, Any]) -> str:
    """An approved grant of the analyst's bank on PUMS for query and stats jobs."""
    grant = request_grant(world, [pums["id"]], ["query", "stats"]).json
    approve(world, grant["id"], STATS_POLICY)
    return str(grant["id"])


@pytest.fixture
def dp_grant_id(world: World, pums: dict[str, Any]) -> str:
    grant = request_grant(world, [pums["id"]]).json
    dp = {"epsilon_total": 2.0, "epsilon_per_job": 1.0, "delta_total": 0.0, "max_rows_per_unit": 1}
    approve(world, grant["id"], {**PUMS_POLICY, "dp": dp})
    return str(grant["id"])


def post(client: FlaskClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf_of(client, "/grants"), **data}, **kwargs)


def page_text(response: Any, status: int = 200) -> str:
    text = str(response.get_data(as_text=True))
    assert response.status_code == status, (response.status_code, text[:400])
    return text


# --- grants ------------------------------------------------------------------------------------------


def test_the_grants_page_shows_the_grants_the_api_shows(world: World, analyst: FlaskClient, grant_id: str) -> None:
    (api,) = world.client.get(f"{API}/grants", headers=auth(world.analyst)).json["items"]
    page = page_text(analyst.get("/grants"))
    assert f'id="grant-{grant_id}"' in page
    assert api["scenario"] in page
    assert 'data-grant-status="approved">已批准<' in page
    assert re.search(r'data-field="job_kinds">SQL 查询, 统计分析<', page)
    assert f"/grants/{grant_id}/query" in page
    assert f"/grants/{grant_id}/stats" in page
    assert 'data-field="budget"' not in page  # no dp: no gauge


def test_a_dp_grant_shows_its_budget_as_the_api_counts_it(app: Flask, world: World, analyst: FlaskClient, dp_grant_id: str) -> None:
    body = {"grant_id": dp_grant_id, "kind": "query", "spec": {"sql": RACE_SQL, "epsilon": 0.5}}
    assert world.client.post(f"{API}/jobs", headers=auth(world.analyst), json=body).status_code == 202
    run_worker(app)
    budget = world.client.get(f"{API}/grants/{dp_grant_id}/budget", headers=auth(world.analyst)).json
    assert budget["epsilon_spent"] == 0.5
    page = page_text(analyst.get("/grants?lang=en"))
    (meter,) = re.findall(r"<meter [^>]*>", page)
    assert 'max="2.0"' in meter
    assert 'value="0.5"' in meter
    assert "0.5 of 2 spent, 1.5 left" in page
    assert 'name="epsilon"' in page_text(analyst.get(f"/grants/{dp_grant_id}/query"))


def test_another_organisations_grant_is_a_404(app: Flask, people: People, grant_id: str) -> None:
    other = signed_in_client(app, people.other_analyst)
    assert grant_id not in page_text(other.get("/grants"))
    for path in (f"/grants/{grant_id}/query", f"/grants/{grant_id}/stats", f"/grants/{uuid.uuid4()}/query"):
        assert other.get(path).status_code == 404
    check = post(other, f"/grants/{grant_id}/query/check", {"sql": RACE_SQL})
    assert check.status_code == 404
    submitted = post(other, f"/grants/{grant_id}/query", {"sql": RACE_SQL, "action": "submit"})
    assert submitted.status_code == 404


@pytest.mark.parametrize("role", ["steward", "auditor", "admin"])
def test_the_analysts_pages_refuse_other_roles(app: Flask, people: People, grant_id: str, role: str) -> None:
    client = signed_in_client(app, getattr(people, role))
    for path in ("/grants", f"/grants/{grant_id}/query", f"/grants/{grant_id}/stats"):
        assert client.get(path).status_code == 403, path
    token = csrf_of(client, "/catalogue")
    for path in (f"/grants/{grant_id}/query", f"/grants/{grant_id}/query/check", f"/grants/{grant_id}/stats"):
        response = client.post(path, data={"csrf_token": token, "sql": RACE_SQL, "index": "race", "action": "submit"})
        assert response.status_code == 403, path


# --- the SQL editor -----------------------------------------------------------------------------------


def test_the_check_names_the_rule_and_column_the_api_names(world: World, analyst: FlaskClient, grant_id: str) -> None:
    body = {"grant_id": grant_id, "kind": "query", "spec": {"sql": ROW_LEVEL_SQL}}
    api = world.client.post(f"{API}/jobs/dry-run", headers=auth(world.analyst), json=body).json["error"]
    check = f"/grants/{grant_id}/query/check?lang=en"
    fragment = page_text(post(analyst, check, {"sql": ROW_LEVEL_SQL}, headers={"HX-Request": "true"}))
    assert "<html" not in fragment
    assert f'data-rule="{api["details"]["rule"]}"' in fragment
    assert f'data-field="column">{api["details"]["column"]}<' in fragment
    assert str(RULE_LABELS[api["details"]["rule"]]) in fragment
    assert api["message"] in fragment


def test_the_check_passes_what_the_api_accepts_and_records_nothing(world: World, analyst: FlaskClient, grant_id: str) -> None:
    before = len(events(world))
    fragment = page_text(post(analyst, f"/grants/{grant_id}/query/check", {"sql": RACE_SQL}))
    assert 'data-check="passed"' in fragment
    fragment = page_text(post(analyst, f"/grants/{grant_id}/query/check", {"sql": ROW_LEVEL_SQL}))
    assert "data-rule=" in fragment
    assert len(events(world)) == before  # a check is not a submission: no job.refused on the ledger


def test_the_editor_validates_as_you_type_through_htmx(analyst: FlaskClient, grant_id: str) -> None:
    page = page_text(analyst.get(f"/grants/{grant_id}/query"))
    (textarea,) = re.findall(r"<textarea[^>]*>", page)
    assert f'hx-post="/grants/{grant_id}/query/check"' in textarea
    assert 'hx-trigger="keyup changed delay:500ms"' in textarea
    assert 'name="epsilon"' not in page  # not a DP grant


def test_a_dry_run_shows_the_apis_mock_answer(world: World, analyst: FlaskClient, grant_id: str) -> None:
    body = {"grant_id": grant_id, "kind": "query", "spec": {"sql": RACE_SQL}}
    api = world.client.post(f"{API}/jobs/dry-run", headers=auth(world.analyst), json=body).json
    page = page_text(post(analyst, f"/grants/{grant_id}/query?lang=en", {"sql": RACE_SQL, "action": "dry_run"}))
    assert "Dry run on mock rows" in page
    header = re.search(r'<table class="list result"[^>]*>\s*<thead><tr>(.*?)</tr>', page, re.S)
    assert header is not None
    assert re.findall(r">([^<]+)</th>", header.group(1)) == [c["name"] for c in api["columns"]]
    assert page.count("<tr>") - 1 == len(api["rows"])
    assert RACE_SQL in page  # the editor keeps the query


def test_submitting_queues_the_job_and_opens_its_page(world: World, analyst: FlaskClient, grant_id: str) -> None:
    response = post(analyst, f"/grants/{grant_id}/query", {"sql": RACE_SQL, "action": "submit"})
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    api = world.client.get(f"{API}/jobs/{job_id}", headers=auth(world.analyst)).json
    assert api["spec"] == {"sql": RACE_SQL}
    assert api["status"] == "queued"


def test_a_refused_submission_stays_in_the_page_and_is_on_the_ledger(world: World, analyst: FlaskClient, grant_id: str) -> None:
    page = page_text(post(analyst, f"/grants/{grant_id}/query", {"sql": ROW_LEVEL_SQL, "action": "submit"}), status=422)
    assert 'data-code="policy_violation"' in page
    assert ROW_LEVEL_SQL in page
    refused = [e for e in events(world) if e["action"] == "job.refused"]
    assert len(refused) == 1
    assert f'data-rule="{refused[0]["details"]["rule"]}"' in page


def test_a_dp_grant_asks_for_epsilon_as_the_api_does(analyst: FlaskClient, dp_grant_id: str) -> None:
    page = page_text(post(analyst, f"/grants/{dp_grant_id}/query", {"sql": RACE_SQL, "action": "submit", "epsilon": ""}), status=400)
    assert "state the job&#39;s epsilon" in page
    page = page_text(post(analyst, f"/grants/{dp_grant_id}/query", {"sql": RACE_SQL, "action": "submit", "epsilon": "lots"}), status=400)
    assert "<dt><code>epsilon</code></dt>" in page
    response = post(analyst, f"/grants/{dp_grant_id}/query", {"sql": RACE_SQL, "action": "submit", "epsilon": "1.5"})
    page = page_text(response, status=429)  # more than a job may spend
    assert 'data-rule="budget_exhausted"' in page
    assert post(analyst, f"/grants/{dp_grant_id}/query", {"sql": RACE_SQL, "action": "submit", "epsilon": "0.25"}).status_code == 303


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"sql": "", "action": "submit"}, 400, id="empty"),
        pytest.param({"sql": "x" * 20_001, "action": "submit"}, 400, id="too-long"),
        pytest.param({"sql": "SELECT race\x00 FROM pums", "action": "submit"}, 400, id="nul"),
        pytest.param({"sql": "SELEKT nonsense ((", "action": "dry_run"}, 400, id="not-sql"),
        pytest.param({"sql": "DROP TABLE pums", "action": "submit"}, 422, id="not-a-select"),
        pytest.param({"sql": RACE_SQL, "action": "submit", "epsilon": "0.5"}, 303, id="epsilon-ignored-without-dp"),
        pytest.param({"sql": RACE_SQL, "action": "explode"}, 400, id="unknown-action"),
    ],
)
def test_bad_input_is_answered_in_the_page_never_a_500(analyst: FlaskClient, grant_id: str, form: dict[str, str], status: int) -> None:
    assert post(analyst, f"/grants/{grant_id}/query", form).status_code == status


def test_every_post_needs_its_csrf_token(analyst: FlaskClient, grant_id: str) -> None:
    for path, data in [
        (f"/grants/{grant_id}/query", {"sql": RACE_SQL, "action": "submit"}),
        (f"/grants/{grant_id}/query/check", {"sql": RACE_SQL}),
        (f"/grants/{grant_id}/stats", {"index": "race", "action": "submit"}),
    ]:
        assert analyst.post(path, data=data).status_code == 400, path
        assert analyst.post(path, data=data, headers={"HX-Request": "true"}).status_code == 400, path
    assert analyst.get("/jobs").get_data(as_text=True).count("/jobs/") == 0  # nothing was submitted


def test_a_rule_the_analyst_can_meet_has_a_translated_name() -> None:
    assert {rule.value for rule in QueryRule} | {rule.value for rule in StatsRule} <= set(RULE_LABELS)


# --- the statistics form ------------------------------------------------------------------------------


def test_the_stats_form_offers_the_grants_columns_by_use(analyst: FlaskClient, grant_id: str) -> None:
    page = page_text(analyst.get(f"/grants/{grant_id}/stats?op=crosstab"))
    index = re.search(r'<select id="index"[^>]*>(.*?)</select>', page, re.S)
    values = re.search(r'<select id="values"[^>]*>(.*?)</select>', page, re.S)
    assert index is not None
    assert values is not None
    assert set(re.findall(r'<option value="([^"]+)"', index.group(1))) == {"age", "sex", "educ", "race"}
    assert set(re.findall(r'<option value="([^"]+)"', values.group(1))) == {"income"}
    assert "pid" not in page  # the identifier is not the grant's to use
    for op in ("pivot", "describe", "quantiles", "histogram"):
        assert f'value="{op}" selected' in page_text(analyst.get(f"/grants/{grant_id}/stats?op={op}"))


@pytest.mark.parametrize(
    ("op", "form", "columns"),
    [
        pytest.param("crosstab", {"index": ["race"], "columns": ["sex"]}, ["race", "sex", "count"], id="crosstab"),
        pytest.param("pivot", {"index": ["race"], "values": ["income"], "aggfunc": ["mean"]}, ["race", "mean_income"], id="pivot"),
        pytest.param("describe", {"columns": ["income"], "statistics": ["count", "mean"]}, ["variable", "count", "mean"], id="describe"),
        pytest.param("quantiles", {"column": "income", "q": "0.25, 0.5"}, ["quantile_0.25", "quantile_0.5"], id="quantiles"),
        pytest.param("histogram", {"column": "age", "bins": "4"}, None, id="histogram"),
    ],
)
def test_a_stats_dry_run_answers_as_the_api_does(
    world: World, analyst: FlaskClient, grant_id: str, op: str, form: dict[str, Any], columns: list[str] | None
) -> None:
    page = page_text(post(analyst, f"/grants/{grant_id}/stats?op={op}&dataset=pums", {**form, "action": "dry_run"}))
    header = re.search(r'<table class="list result"[^>]*>\s*<thead><tr>(.*?)</tr>', page, re.S)
    assert header is not None, page[-2000:]
    shown = re.findall(r">([^<]+)</th>", header.group(1))
    if columns is not None:
        assert shown == columns
    assert len(shown) >= 2


def test_a_stats_job_is_submitted_with_the_spec_the_form_built(world: World, analyst: FlaskClient, grant_id: str) -> None:
    form = {"index": ["race"], "columns": ["sex"], "margins": "on", "action": "submit"}
    response = post(analyst, f"/grants/{grant_id}/stats?op=crosstab&dataset=pums", form)
    assert response.status_code == 303, response.get_data(as_text=True)[-1500:]
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    api = world.client.get(f"{API}/jobs/{job_id}", headers=auth(world.analyst)).json
    assert api["kind"] == "stats"
    assert api["spec"] == {"op": "crosstab", "dataset": "pums", "index": ["race"], "columns": ["sex"], "margins": True}


def test_a_refused_stats_spec_names_the_rule_and_column(analyst: FlaskClient, grant_id: str) -> None:
    response = post(analyst, f"/grants/{grant_id}/stats?op=histogram&dataset=pums", {"column": "income", "bins": "5", "action": "submit"})
    page = page_text(response, status=422)
    assert 'data-rule="measure_as_dimension"' in page
    assert 'data-field="column">pums.income<' in page
    empty = post(analyst, f"/grants/{grant_id}/stats?op=crosstab&dataset=pums", {"action": "dry_run"})
    assert "<dt><code>index</code></dt>" in page_text(empty, status=400)


def test_the_analysts_pages_have_no_inline_script_or_style(analyst: FlaskClient, grant_id: str) -> None:
    for path in ("/grants", f"/grants/{grant_id}/query", f"/grants/{grant_id}/stats?op=pivot"):
        page = page_text(analyst.get(path))
        assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
        assert "<style" not in page
        assert " style=" not in page
        assert re.findall(r"<[^>]+\son[a-z]+=", page) == []
