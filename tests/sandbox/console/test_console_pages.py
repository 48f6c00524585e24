"""The console's pages: the catalogue and the analyst's jobs show what the API shows the same person, never a value.

Every page is checked for the security headers, every link on the pages a role reaches is followed
(no link to a page that does not exist), and another analyst's job is a 404 like an id that never existed.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sandbox.api.analyst_view import FAILED_REASON
from sandbox.db import get_db_of
from sandbox.models import Job
from sandbox.runtime.child import MEMORY_REASON
from tests.conftest import PUMS_POLICY, World, auth, request_grant
from tests.sandbox.console.kit import API, People, csrf_of, signed_in_client, text_of

# A table whose values must never reach a page: 13 rows (the analyst's catalogue shows 10).
CANARY_NAME = "CANARYNAME7Q"
CANARY_INCOME = "43210.987"
CANARY_ROWS = 13
CANARY_CSV = ("pid,name,income,district\n" + "".join(
    f"{i},{CANARY_NAME if i == 1 else f'person{i}'},{CANARY_INCOME if i == 1 else 1000 + i},{'east' if i % 2 else 'west'}\n"
    for i in range(1, CANARY_ROWS + 1)
)).encode()  # fmt: skip


def canary_meta(level: str = "一般") -> dict[str, Any]:
    return {
        "name": f"canary_{uuid.uuid4().hex[:8]}",
        "title": "Household incomes 家庭收入",
        "description": "A table for the console's tests",
        "level": level,
        "privacy_unit": "pid",
        "columns": {
            "pid": {"role": "identifier", "type": "int"},
            "name": {"role": "identifier", "type": "string"},
            "income": {"role": "sensitive", "type": "float", "bounds": [0, 100000]},
            "district": {"role": "quasi_identifier", "type": "string", "description": "city district"},
        },
    }


PLAIN_CSV = b"code,score\na,1\nb,2\nc,3\n"


def plain_meta() -> dict[str, Any]:
    return {
        "name": f"plain_{uuid.uuid4().hex[:8]}",
        "title": "School scores",
        "level": "重要",
        "privacy_unit": "code",
        "columns": {"code": {"role": "attribute", "type": "string"}, "score": {"role": "attribute", "type": "int", "bounds": [0, 10]}},
    }


def upload(world: World, token: str, csv: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    response = world.client.post(
        f"{API}/datasets",
        headers=auth(token),
        data={"meta": json.dumps(meta), "file": (io.BytesIO(csv), "table.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    return dict(response.json)


@pytest.fixture
def canary(world: World) -> dict[str, Any]:
    """The canary table of the steward's bureau."""
    return upload(world, world.steward, CANARY_CSV, canary_meta())


@pytest.fixture
def plain(world: World) -> dict[str, Any]:
    """Another bureau's table, of level 重要, without identifiers."""
    return upload(world, world.other_steward, PLAIN_CSV, plain_meta())


@pytest.fixture
def analyst(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.analyst)


def count_shown(page: str, field: str) -> list[str]:
    return re.findall(rf'data-field="{field}">([^<]*)<', page)


# --- the catalogue ---------------------------------------------------------------------------------


def test_the_analyst_sees_counts_rounded_as_the_api_rounds_them(app: Flask, world: World, people: People, canary: dict[str, Any]) -> None:
    analyst, steward = signed_in_client(app, people.analyst), signed_in_client(app, people.steward)
    api = world.client.get(f"{API}/datasets/{canary['id']}", headers=auth(world.analyst)).json
    assert api["row_count"] == 10
    assert count_shown(text_of(analyst, "/catalogue"), "row_count") == ["10"]
    assert count_shown(text_of(analyst, f"/catalogue/{canary['id']}"), "row_count") == ["10"]
    assert count_shown(text_of(steward, f"/catalogue/{canary['id']}"), "row_count") == [str(CANARY_ROWS)]


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        pytest.param("", {"canary", "plain"}, id="everything"),
        pytest.param("level=重要", {"plain"}, id="level"),
        pytest.param("column_role=identifier", {"canary"}, id="column-role"),
        pytest.param("q=district", {"canary"}, id="search-column"),
        pytest.param("q=SCHOOL", {"plain"}, id="search-title-any-case"),
        pytest.param("q=nothing-like-this", set(), id="search-none"),
        pytest.param("level=not-a-level", {"canary", "plain"}, id="unknown-level-ignored"),
    ],
)
def test_the_catalogue_filters(analyst: FlaskClient, canary: dict[str, Any], plain: dict[str, Any], query: str, shown: set[str]) -> None:
    page = text_of(analyst, f"/catalogue?{query}")
    names = {"canary": canary["name"], "plain": plain["name"]}
    assert {key for key, name in names.items() if f"<code>{name}</code>" in page} == shown


def test_the_catalogue_filters_by_bureau(world: World, analyst: FlaskClient, canary: dict[str, Any], plain: dict[str, Any]) -> None:
    page = text_of(analyst, f"/catalogue?bureau={world.ids['bureau2']}")
    assert plain["name"] in page
    assert canary["name"] not in page


def test_an_htmx_search_gets_only_the_results(analyst: FlaskClient, canary: dict[str, Any]) -> None:
    page = text_of(analyst, "/catalogue?q=household", headers={"HX-Request": "true"})
    assert "<html" not in page
    assert canary["name"] in page


def test_a_dataset_page_shows_the_schema_and_mock_rows(analyst: FlaskClient, canary: dict[str, Any]) -> None:
    page = text_of(analyst, f"/catalogue/{canary['id']}")
    for column in ("pid", "name", "income", "district"):
        assert f"<code>{column}</code>" in page
    assert "准标识符" in page  # the column role, translated
    assert "仅依据声明的元数据生成的合成数据" in page
    assert page.count("<tr>") >= 10  # the column table's and the mock table's rows


def test_an_unknown_dataset_is_a_404_page(analyst: FlaskClient) -> None:
    page = text_of(analyst, f"/catalogue/{uuid.uuid4()}", status=404)
    assert "页面不存在，或您无权查看" in page


def test_no_page_of_the_analyst_shows_a_value(world: World, analyst: FlaskClient, canary: dict[str, Any]) -> None:
    pages = [text_of(analyst, path) for path in ("/catalogue", f"/catalogue/{canary['id']}", "/jobs", "/catalogue?q=income")]
    for page in pages:
        assert CANARY_NAME not in page
        assert CANARY_INCOME not in page
        assert "person2" not in page


# --- the analyst's jobs ----------------------------------------------------------------------------


@pytest.fixture
def job_id(world: World, pums: dict[str, Any]) -> str:
    """A queued job of the analyst on an approved grant."""
    grant = request_grant(world, [pums["id"]]).json
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    approved = world.client.post(
        f"{API}/grants/{grant['id']}/approve", headers=auth(world.steward), json={"policy": PUMS_POLICY, "expires_at": expires}
    )
    assert approved.status_code == 200, approved.json
    sql = "SELECT race, COUNT(*) AS n FROM pums GROUP BY race"
    submitted = world.client.post(
        f"{API}/jobs", headers=auth(world.analyst), json={"grant_id": grant["id"], "kind": "query", "spec": {"sql": sql}}
    )
    assert submitted.status_code == 202, submitted.json
    return str(submitted.json["id"])


def test_my_jobs_lists_the_job_with_its_status_and_refreshes_while_unfinished(analyst: FlaskClient, job_id: str) -> None:
    page = text_of(analyst, "/jobs")
    assert f"/jobs/{job_id}" in page
    assert 'data-status="queued">排队中<' in page
    assert 'hx-trigger="every 5s"' in page
    job_page = text_of(analyst, f"/jobs/{job_id}")
    assert "SELECT race" in job_page
    assert 'data-status="queued"' in job_page


def test_another_analysts_job_is_a_404_like_an_unknown_one(app: Flask, people: People, job_id: str) -> None:
    other = signed_in_client(app, people.other_analyst)
    unknown_id = str(uuid.uuid4())
    theirs = text_of(other, f"/jobs/{job_id}", status=404)
    unknown = text_of(other, f"/jobs/{unknown_id}", status=404)
    assert theirs.replace(job_id, "ID") == unknown.replace(unknown_id, "ID")
    assert job_id not in text_of(other, "/jobs")


def test_a_jobs_reason_reads_as_the_api_tells_the_analyst(app: Flask, world: World, analyst: FlaskClient, job_id: str) -> None:
    with get_db_of(app).writing() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.reason, job.finished_at = "failed", MEMORY_REASON, datetime.now(UTC)
    api = world.client.get(f"{API}/jobs/{job_id}", headers=auth(world.analyst)).json
    page = text_of(analyst, f"/jobs/{job_id}")
    assert api["reason"] == FAILED_REASON
    assert FAILED_REASON in page
    assert MEMORY_REASON not in page
    assert "hx-trigger" not in page  # finished: no more refreshing


@pytest.mark.parametrize("role", ["steward", "auditor", "admin"])
def test_my_jobs_is_the_analysts_page(app: Flask, people: People, role: str) -> None:
    page = text_of(signed_in_client(app, getattr(people, role)), "/jobs", status=403)
    assert "您的角色无权打开此页面" in page


# --- home pages and links --------------------------------------------------------------------------


def test_the_analyst_lands_on_the_catalogue(analyst: FlaskClient) -> None:
    assert analyst.get("/").headers["Location"] == "/catalogue"


@pytest.mark.parametrize(
    ("role", "pages"), [("auditor", ["/reviews", "/ledger"]), ("admin", ["/admin/orgs", "/admin/users"])], ids=["auditor", "admin"]
)
def test_the_auditors_and_the_admins_home_points_to_their_pages(app: Flask, people: People, role: str, pages: list[str]) -> None:
    page = text_of(signed_in_client(app, getattr(people, role)), "/")
    home = page.split('<main id="main">', 1)[1]
    assert re.findall(r'<li><a href="([^"]+)"', home) == pages
    assert "尚未建成" not in page


def _links(page: str) -> set[str]:
    """The page's links and its GET forms' actions (a POST form's action is tested with its form)."""
    found = set(re.findall(r'(?:href|src|hx-get)="([^"]+)"', page))
    found |= set(re.findall(r'<form(?![^>]*method="post")[^>]*action="([^"]+)"', page))
    return {link.replace("&amp;", "&") for link in found}


@pytest.mark.parametrize("role", ["analyst", "steward", "auditor", "admin"])
def test_every_link_of_every_page_a_role_reaches_works(app: Flask, people: People, canary: dict[str, Any], job_id: str, role: str) -> None:
    client = signed_in_client(app, getattr(people, role))
    seen: set[str] = set()
    todo = ["/", "/catalogue", f"/catalogue/{canary['id']}"] + ([f"/jobs/{job_id}", "/jobs"] if role == "analyst" else [])
    while todo:
        path = todo.pop().split("#", 1)[0]
        if not path or path in seen:
            continue
        seen.add(path)
        assert not urlsplit(path).netloc, f"a link off the site: {path}"
        if path in {"/sign-out", "/sign-out-everywhere", "/language"}:
            continue  # form actions (POST), tested on their own
        response = client.get(path)
        assert response.status_code in (200, 302), (path, response.status_code)
        if response.status_code == 302:
            todo.append(response.headers["Location"])
        elif response.mimetype == "text/html":
            todo += sorted(_links(response.get_data(as_text=True)) - seen)
        response.close()
    assert len(seen) >= 5


def test_pages_and_the_api_carry_the_security_headers(world: World, analyst: FlaskClient) -> None:
    for response in (analyst.get("/catalogue"), world.client.get(f"{API}/me", headers=auth(world.analyst))):
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert analyst.get("/catalogue").headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" in analyst.get("/catalogue", base_url="https://localhost").headers


def test_no_page_has_an_inline_script_or_style(analyst: FlaskClient, canary: dict[str, Any]) -> None:
    for path in ("/catalogue", f"/catalogue/{canary['id']}", "/jobs", "/sign-in"):
        page = text_of(analyst, path)
        assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
        assert "<style" not in page
        assert " style=" not in page
        assert re.findall(r"<[^>]+\son[a-z]+=", page) == []


# --- languages -------------------------------------------------------------------------------------


def test_chinese_by_default_english_on_request(analyst: FlaskClient, canary: dict[str, Any]) -> None:
    chinese = text_of(analyst, "/catalogue")
    english = text_of(analyst, "/catalogue?lang=en")
    assert '<html lang="zh-CN">' in chinese
    assert "数据目录" in chinese
    assert '<html lang="en">' in english
    assert "Catalogue" in english
    assert "数据目录" not in english
    # Dates per locale: 2026年12月7日 against Dec 7, 2026.
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", chinese)
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}", english)


def test_numbers_are_grouped_in_both_languages(app: Flask, world: World, people: People) -> None:
    big = b"id,v\n" + b"".join(b"%d,1\n" % i for i in range(1, 1236))
    meta = {
        "name": "big_table",
        "title": "Big",
        "level": "一般",
        "privacy_unit": "id",
        "columns": {"id": {"role": "identifier", "type": "int"}, "v": {"role": "attribute", "type": "int", "bounds": [0, 1]}},
    }
    upload(world, world.steward, big, meta)
    steward = signed_in_client(app, people.steward)
    assert count_shown(text_of(steward, "/catalogue"), "row_count") == ["1,235"]
    assert count_shown(text_of(steward, "/catalogue?lang=en"), "row_count") == ["1,235"]
    analyst = signed_in_client(app, people.analyst)
    assert count_shown(text_of(analyst, "/catalogue"), "row_count") == ["1,240"]


def test_the_language_form_sets_a_cookie_and_needs_its_csrf_token(analyst: FlaskClient) -> None:
    refused = analyst.post("/language", data={"lang": "en", "next": "/catalogue"})
    assert refused.status_code == 400
    assert "数据目录" in text_of(analyst, "/catalogue")
    response = analyst.post("/language", data={"lang": "en", "next": "/catalogue", "csrf_token": csrf_of(analyst, "/catalogue")})
    assert response.status_code == 302
    assert response.headers["Location"] == "/catalogue"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("lang="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Catalogue" in text_of(analyst, "/catalogue")


def test_switching_language_drops_a_lang_parameter_from_the_page_to_return_to(analyst: FlaskClient) -> None:
    token = csrf_of(analyst, "/catalogue?lang=en")
    response = analyst.post("/language", data={"lang": "zh_CN", "next": "/catalogue?q=x&lang=en", "csrf_token": token})
    assert response.headers["Location"] == "/catalogue?q=x"
    assert "数据目录" in text_of(analyst, response.headers["Location"])


def test_htmx_keeps_no_snapshot_of_a_page_for_the_back_button(analyst: FlaskClient) -> None:
    """After signing out in a tab, Back must not show a signed-in page from htmx's sessionStorage cache."""
    page = text_of(analyst, "/catalogue")
    (config,) = re.findall(r"<meta name=\"htmx-config\" content='([^']*)'>", page)
    settings = json.loads(config)
    assert settings["historyCacheSize"] == 0
    assert settings["refreshOnHistoryMiss"] is True  # Back asks the server again (and a signed-out person gets the sign-in)
