"""The console in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

One browser for the module. The demo instance is made by ``python -m sandbox init --demo`` (as
``make run`` makes it) and served on a free local port; the demo analyst signs in with the password
from ``demo-passwords.env``, from the keyboard, and browses the catalogue (an htmx search, a
dataset's page) and their jobs in Chinese and in English; then, in each language, opens the SQL editor of
the PUMS grant, sees the policy's verdict as they type, submits, watches the job until a worker releases
it, sees the chart with its withheld cells marked, and downloads the CSV. Two auditors (the demo's, in Chinese, and a
second one given a password through the admin's link, in English) each release a job held for two
reviewers; the job is released and the ledger page's verify badge is green. Every request the pages make is recorded:
none may leave the site, and the browser must report no Content-Security-Policy violation (so htmx
works without inline script). Screenshots go to ``test-artifacts/console/`` (gitignored; another
folder through ``SANDBOX_TEST_ARTIFACTS``).

Chromium comes from apt (``scripts/console-deps.sh``, run by ``make test``); Playwright never downloads
a browser. Without ``/usr/bin/chromium`` the test is skipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from sandbox import create_app
from sandbox.app import instance_of
from sandbox.db import get_db_of
from sandbox.demo import passwords as demo_passwords
from sandbox.demo import tokens as demo_tokens
from sandbox.runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
# No first-run work, no updates, no calls home: the only requests are the pages'.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = Path(os.environ.get("SANDBOX_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "console"
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo instance served on a free port: its URL, the analyst's password and API token."""
    instance = tmp_path_factory.mktemp("console-demo") / "instance"
    env = {**os.environ, "SANDBOX_INSTANCE_PATH": str(instance)}
    subprocess.run([sys.executable, "-m", "sandbox", "init", "--demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    app = create_app({"INSTANCE_PATH": str(instance), "DATABASE_URL": f"sqlite:///{instance / 'sandbox.db'}"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "app": app,
            "url": f"http://127.0.0.1:{server.server_port}",
            "password": demo_passwords.read(demo_passwords.path_in(instance))["analyst"],
            "token": demo_tokens.read(demo_tokens.path_in(instance))["analyst"],
            "passwords": demo_passwords.read(demo_passwords.path_in(instance)),
            "tokens": demo_tokens.read(demo_tokens.path_in(instance)),
        }
    finally:
        server.shutdown()
        thread.join()
        get_db_of(app).engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: /usr/bin/chromium is missing (scripts/console-deps.sh installs it)")
        pytest.skip("/usr/bin/chromium is missing: scripts/console-deps.sh installs it as root")

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def watched(browser: Any, height: int) -> tuple[Any, Any, list[str], list[str]]:
    """A Chinese browser context and its page, with every URL it requests and every error it reports recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": height}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return context, page, requested, problems


def submit_a_job(demo: dict[str, Any]) -> str:
    """A job of the demo analyst through the API (no worker runs: it stays queued)."""
    headers = {"Authorization": f"Bearer {demo['token']}"}
    grants = requests.get(f"{demo['url']}/api/v1/grants", headers=headers, timeout=30).json()["items"]
    grant = next(g for g in grants if g["status"] == "approved" and "query" in g["policy"]["job_kinds"] and "pums" in g["datasets"])
    spec = {"sql": "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ"}
    response = requests.post(
        f"{demo['url']}/api/v1/jobs", headers=headers, json={"grant_id": grant["id"], "kind": "query", "spec": spec}, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_the_demo_analyst_browses_the_catalogue_and_jobs_in_both_languages(browser: Any, demo: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    job_id = submit_a_job(demo)
    context, page, requested, problems = watched(browser, 860)

    # Signing in, from the keyboard: the login field has the focus, Tab moves on, Enter submits.
    page.goto(demo["url"] + "/")
    assert page.url == demo["url"] + "/sign-in?next=/"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "登录"
    page.keyboard.type("analyst")
    page.keyboard.press("Tab")
    page.keyboard.type(demo["password"])
    page.keyboard.press("Enter")
    page.wait_for_url(demo["url"] + "/catalogue")
    assert page.locator("h1").inner_text() == "数据目录"
    names = page.locator("#results tbody code").all_inner_texts()
    assert "pums" in names
    assert len(names) >= 3
    page.screenshot(path=str(ARTIFACTS / "catalogue-zh.png"), full_page=True)

    # An htmx search: the results change in place and the address follows.
    page.fill("#q", "teacher")
    page.wait_for_url("**/catalogue?q=teacher**")
    expect(page.locator("#results tbody tr")).to_have_count(1)  # not wait_for_function: the CSP refuses its eval
    assert page.locator("#results tbody code").all_inner_texts() == ["teacher_survey"]
    assert page.locator("h1").count() == 1  # a fragment was swapped in, not a whole page

    # A dataset's page: its columns and mock rows.
    page.click("#results tbody a")
    page.wait_for_url("**/catalogue/*")
    assert "模拟数据" in page.locator("main").inner_text()
    assert page.locator("table.mock tbody tr").count() == 10
    page.screenshot(path=str(ARTIFACTS / "dataset-zh.png"), full_page=True)

    # My jobs: the queued job, refreshed by htmx while it is unfinished.
    page.click("text=我的任务")
    page.wait_for_url(demo["url"] + "/jobs")
    assert page.locator(f'a[href="/jobs/{job_id}"]').count() == 1
    assert page.locator('[data-status="queued"]').first.inner_text() == "排队中"
    with page.expect_request(
        lambda request: request.url == demo["url"] + "/jobs" and request.headers.get("hx-request") == "true", timeout=15_000
    ):
        pass  # the list asks for itself again within its refresh period
    page.screenshot(path=str(ARTIFACTS / "jobs-zh.png"), full_page=True)

    # English, through the language form.
    page.click("button[name=lang][value=en]")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "My jobs"
    assert page.locator('[data-status="queued"]').first.inner_text() == "queued"
    page.click("text=Catalogue")
    page.wait_for_url(demo["url"] + "/catalogue")
    assert page.locator("h1").inner_text() == "Catalogue"
    assert page.locator("#level option").all_inner_texts()[0] == "all levels"
    page.screenshot(path=str(ARTIFACTS / "catalogue-en.png"), full_page=True)

    context.close()
    outside = sorted({url for url in requested if not url.startswith(demo["url"] + "/")})
    assert outside == [], f"requests that left the site: {outside}"
    assert any(url.endswith("/static/vendor/htmx-2.0.11/htmx.min.js") for url in requested)
    assert problems == [], f"browser errors (a CSP violation shows here): {problems}"


RACE_SQL = "SELECT race, COUNT(*) AS n FROM pums GROUP BY race"  # races 5 and 6: too few people, withheld
TEXTS = {  # what the pages say, per language
    "zh_CN": {"withheld": "已抑制", "rule": "度量字段只能在聚合函数内使用", "passed": "查询符合授权策略", "released": "已发布"},
    "en": {
        "withheld": "withheld",
        "rule": "a measure is used only inside an aggregate",
        "passed": "The query passes",
        "released": "released",
    },
}


def cancel_queued_jobs(demo: dict[str, Any]) -> None:
    """Cancel the demo analyst's queued jobs (the first test's): released before this journey's query, a count by
    another grouping gives the total, from which the release audit would see the sum of the withheld cells."""
    headers = {"Authorization": f"Bearer {demo['token']}"}
    queued = requests.get(f"{demo['url']}/api/v1/jobs?status=queued", headers=headers, timeout=30).json()["items"]
    for job in queued:
        response = requests.post(f"{demo['url']}/api/v1/jobs/{job['id']}/cancel", headers=headers, timeout=30)
        assert response.status_code == 200, response.text


def signed_in_page(browser: Any, demo: dict[str, Any], language: str) -> tuple[Any, Any, list[str], list[str]]:
    """A new browser context signed in as the demo analyst, in ``language``; its requests and errors recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    requested: list[str] = []
    problems: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(demo["url"] + "/sign-in?next=/grants")
    page.fill("#login", "analyst")
    page.fill("#password", demo["password"])
    page.keyboard.press("Enter")
    page.wait_for_url(demo["url"] + "/grants")
    if language == "en":
        page.click("button[name=lang][value=en]")
        page.wait_for_load_state()
    return context, page, requested, problems


@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_the_demo_analyst_queries_and_sees_a_chart_with_withheld_cells(browser: Any, demo: dict[str, Any], language: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    texts = TEXTS[language]
    cancel_queued_jobs(demo)
    context, page, requested, problems = signed_in_page(browser, demo, language)
    assert page.locator("meter").count() == 0  # the demo grants have no dp
    page.screenshot(path=str(ARTIFACTS / f"grants-{language}.png"), full_page=True)

    # The SQL editor of the PUMS grant: the policy's verdict as one types, from the keyboard.
    page.locator("section.grant", has_text="pums").locator("a[href$='/query']").click()
    page.wait_for_url("**/query")
    page.focus("#sql")
    page.keyboard.type("SELECT income FROM pums")
    expect(page.locator("#check [data-rule]")).to_have_attribute("data-rule", "measure_outside_aggregate")
    expect(page.locator("#check")).to_contain_text(texts["rule"])
    expect(page.locator("#check [data-field=column]")).to_have_text("pums.income")
    page.screenshot(path=str(ARTIFACTS / f"sql-editor-refused-{language}.png"), full_page=True)
    page.fill("#sql", "")
    page.focus("#sql")
    page.keyboard.type(RACE_SQL)
    expect(page.locator("#check [data-check=passed]")).to_contain_text(texts["passed"])

    # Submit: the job's page, watching the job until a worker releases it and the page reloads with the result.
    page.click("button[name=action][value=submit]")
    page.wait_for_url("**/jobs/*")
    assert Worker(instance_of(demo["app"])).run(once=True) >= 1
    expect(page.locator("#result-chart[data-drawn=true]")).to_be_visible(timeout=15_000)
    expect(page.locator('[data-status="released"]')).to_have_text(texts["released"])
    withheld = page.locator("table.result td.withheld")
    expect(withheld).to_have_count(2)
    for cell in withheld.all():
        assert cell.inner_text().strip().endswith(texts["withheld"])
    assert page.locator("#result-chart canvas").count() >= 1
    page.screenshot(path=str(ARTIFACTS / f"result-chart-{language}.png"), full_page=True)

    # The CSV: UTF-8 with a BOM, the withheld cells empty and marked.
    with page.expect_download() as download:
        page.click("a[href$='result.csv']")
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("race,n,")
    empty = [line for line in lines[1:7] if line.split(",")[1] == ""]
    assert len(empty) == 2
    assert all(texts["withheld"] in line for line in empty)

    context.close()
    outside = sorted({url for url in requested if not url.startswith(demo["url"] + "/")})
    assert outside == [], f"requests that left the site: {outside}"
    assert any(url.endswith("/static/vendor/echarts-6.1.0/echarts.min.js") for url in requested)
    assert problems == [], f"browser errors (a CSP violation shows here): {problems}"


def api(demo: dict[str, Any], who: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {demo['tokens'][who]}"}
    response = requests.request(method, f"{demo['url']}/api/v1{path}", headers=headers, timeout=30, **kwargs)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json()


def held_for_two(demo: dict[str, Any]) -> str:
    """A query job of the demo analyst on a new grant whose policy holds every output for two reviewers, run to ``held``."""
    grants = api(demo, "analyst", "GET", "/grants")["items"]
    policy = next(g for g in grants if g["status"] == "approved" and "pums" in g["datasets"])["policy"]
    pums = next(d for d in api(demo, "analyst", "GET", "/datasets")["items"] if d["name"] == "pums")
    scenario = "Browser test: income by race, reviewed by two auditors."
    asked = {"dataset_ids": [pums["id"]], "scenario": scenario, "requested": {"job_kinds": ["query"]}}
    grant = api(demo, "analyst", "POST", "/grants", json=asked)
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    reviewed = policy | {"release_mode": "always_review", "reviewers": 2, "job_kinds": ["query"]}
    api(demo, "steward", "POST", f"/grants/{grant['id']}/approve", json={"policy": reviewed, "expires_at": expires})
    for queued in api(demo, "analyst", "GET", "/jobs", params={"status": "queued"})["items"]:
        api(demo, "analyst", "POST", f"/jobs/{queued['id']}/cancel")  # only this job runs (the release audit weighs earlier releases)
    spec = {"sql": "SELECT race, COUNT(*) AS n FROM pums GROUP BY race"}
    job = api(demo, "analyst", "POST", "/jobs", json={"grant_id": grant["id"], "kind": "query", "spec": spec})
    Worker(instance_of(demo["app"])).run(once=True)
    assert api(demo, "auditor", "GET", f"/jobs/{job['id']}")["status"] == "held"
    return str(job["id"])


def second_auditor(demo: dict[str, Any]) -> str:
    """A new auditor of the demo's audit office (besides the demo's auditor2), with a password set through the
    admin's one-time link; their password."""
    audit = next(o for o in api(demo, "admin", "GET", "/orgs")["items"] if o["kind"] == "audit")
    user = api(demo, "admin", "POST", "/users", json={"name": "Second Auditor 第二审核人", "org_id": audit["id"], "role": "auditor"})
    link = api(demo, "admin", "POST", f"/users/{user['id']}/password-link", json={"login": "newauditor"})["url"]
    password = "browser test password " + user["id"][:8]
    with requests.Session() as browserless:
        form = browserless.get(link, timeout=30).text
        csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        data = {"csrf_token": csrf, "password": password, "again": password}
        assert browserless.post(link, data=data, timeout=30, allow_redirects=False).status_code == 302
    return password


def sign_in_and_release(page: Any, demo: dict[str, Any], login: str, password: str, job_id: str, lang: str) -> None:
    """Sign in as ``login`` from the keyboard, open the held job from the home page and the queue, and release it."""
    page.goto(f"{demo['url']}/sign-in")
    if lang == "en":  # the language form: a cookie for the pages to come
        page.click("button[name=lang][value=en]")
        page.wait_for_url(demo["url"] + "/sign-in")
        assert page.locator("html").get_attribute("lang") == "en"
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(demo["url"] + "/")
    page.click("main a[href='/reviews']")
    page.wait_for_url(demo["url"] + "/reviews")
    page.click(f"a[href='/reviews/{job_id}']")
    page.wait_for_url(f"{demo['url']}/reviews/{job_id}")
    expect(page.locator("#proposed")).to_be_visible()
    expect(page.locator("#raw")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"review-{lang}.png"), full_page=True)
    page.check("input[name=decision][value=release]")
    page.fill("#reason", "aggregates by race of many persons")
    page.click("form.decision button[type=submit]")
    page.wait_for_url(demo["url"] + "/reviews")


def test_two_auditors_release_a_held_job_and_the_ledger_verifies_in_both_languages(browser: Any, demo: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    job_id = held_for_two(demo)
    password = second_auditor(demo)
    requested: list[str] = []
    problems: list[str] = []

    for login, secret, lang in (("auditor", demo["passwords"]["auditor"], "zh_CN"), ("newauditor", password, "en")):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN" if lang == "zh_CN" else "en")
        context.set_default_timeout(TIMEOUT_MS)
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        sign_in_and_release(page, demo, login, secret, job_id, lang)
        notice = page.locator("p.notice").inner_text()
        if login == "auditor":
            assert "您的决定已记录" in notice
            assert api(demo, "auditor", "GET", f"/jobs/{job_id}")["status"] == "held"  # one of two
            page.goto(f"{demo['url']}/reviews/{job_id}")
            expect(page.locator("#decided-already")).to_be_visible()  # nobody decides twice
        else:
            assert "Your decision is recorded" in notice
            assert api(demo, "auditor", "GET", f"/jobs/{job_id}")["status"] == "released"
        page.click("header nav a[href='/ledger']")
        page.wait_for_url(demo["url"] + "/ledger")
        expect(page.locator('[data-verified="ok"]')).to_be_visible()
        assert page.locator('[data-verified="ok"]').inner_text() == ("校验通过" if lang == "zh_CN" else "Verified")
        page.screenshot(path=str(ARTIFACTS / f"ledger-{lang}.png"), full_page=True)
        context.close()

    outside = sorted({url for url in requested if not url.startswith(demo["url"] + "/")})
    assert outside == [], f"requests that left the site: {outside}"
    assert problems == [], f"browser errors (a CSP violation shows here): {problems}"


# --- the steward: a small CSV on the shelf, a grant approved, in Chinese and in English -------------


STEWARD_CSV = "统一社会信用代码,地区,营业收入\n" + "".join(
    f"{code},{district},{1000 + i}.5\n"
    for i, (code, district) in enumerate([("91350100M000100Y43", "东城区"), ("91440300708461136T", "西城区")] * 10)
)


def request_a_grant(demo: dict[str, Any], dataset_id: str) -> str:
    """The demo analyst asks for a grant on the steward's new dataset, through the API."""
    body = {"dataset_ids": [dataset_id], "scenario": "按地区统计营业收入，用于区域经济研究", "requested": {"job_kinds": ["query"]}}
    response = requests.post(f"{demo['url']}/api/v1/grants", headers={"Authorization": f"Bearer {demo['token']}"}, json=body, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def onboard_and_approve(page: Any, demo: dict[str, Any], name: str, texts: dict[str, str], shots: str) -> None:
    """Upload STEWARD_CSV as ``name`` with the suggested roles, then approve the analyst's request with the preset."""
    page.click(f"text={texts['new']}")
    page.wait_for_url("**/steward/datasets/new")
    page.set_input_files("#file", files=[{"name": "revenue.csv", "mimeType": "text/csv", "buffer": STEWARD_CSV.encode()}])
    expect(page.locator("[data-reason]")).to_have_count(3)  # the htmx suggestion arrived
    assert page.locator("[data-reason]").first.get_attribute("data-reason") == "credit_code"
    assert page.locator("input[name=privacy_unit]:checked").get_attribute("value") == "统一社会信用代码"
    assert page.locator("select[name=col-2-role]").input_value() == "sensitive"
    page.fill("#name", name)
    page.fill("#title", texts["title"])
    page.select_option("#level", "重要")
    page.fill("input[name=col-2-lower]", "0")
    page.fill("input[name=col-2-upper]", "100000")
    page.screenshot(path=str(ARTIFACTS / f"steward-upload-{shots}.png"), full_page=True)
    page.click(f"button:text-is('{texts['upload']}')")
    page.wait_for_url("**/steward/datasets/*")
    assert texts["shelved"] in page.locator(".notice").inner_text()
    dataset_id = page.url.rsplit("/", 1)[1]

    grant_id = request_a_grant(demo, dataset_id)
    page.click(f"nav >> text={texts['requests']}")
    page.wait_for_url("**/steward/grants")
    page.click(f'tr[data-grant="{grant_id}"] a')
    page.wait_for_url(f"**/steward/grants/{grant_id}")
    assert "区域经济研究" in page.locator(".scenario").inner_text()
    page.screenshot(path=str(ARTIFACTS / f"steward-policy-{shots}.png"), full_page=True)
    page.click(f"button:text-is('{texts['approve']}')")
    page.wait_for_url("**/steward/grants")
    assert texts["approved"] in page.locator(".notice").inner_text()
    assert page.locator(f'tr[data-grant="{grant_id}"] [data-status="approved"]').count() == 1
    grant = requests.get(f"{demo['url']}/api/v1/grants/{grant_id}", headers={"Authorization": f"Bearer {demo['token']}"}, timeout=30)
    assert grant.json()["status"] == "approved"
    assert grant.json()["policy"]["columns"][name]["营业收入"] == "measure"


def test_the_demo_steward_onboards_a_table_and_approves_a_grant_in_both_languages(browser: Any, demo: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page, requested, problems = watched(browser, 900)

    page.goto(demo["url"] + "/")
    page.keyboard.type("steward")
    page.keyboard.press("Tab")
    page.keyboard.type(demo["passwords"]["steward"])
    page.keyboard.press("Enter")
    page.wait_for_url(demo["url"] + "/")
    page.screenshot(path=str(ARTIFACTS / "steward-home-zh.png"), full_page=True)
    zh = {"new": "上架新数据集", "title": "企业营收（测试）", "upload": "上传", "shelved": "已上架", "requests": "授权申请",
          "approve": "按此策略批准", "approved": "授权已批准"}  # fmt: skip
    onboard_and_approve(page, demo, "营收_中文", zh, "zh")

    page.click("button[name=lang][value=en]")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    page.click("nav >> text=Our datasets")
    en = {"new": "Put a new dataset on the shelf", "title": "Revenue (test)", "upload": "Upload", "shelved": "is on the shelf",
          "requests": "Grant requests", "approve": "Approve with this policy", "approved": "The grant is approved."}  # fmt: skip
    onboard_and_approve(page, demo, "revenue_en", en, "en")

    context.close()
    outside = sorted({url for url in requested if not url.startswith(demo["url"] + "/")})
    assert outside == [], f"requests that left the site: {outside}"
    assert problems == [], f"browser errors (a CSP violation shows here): {problems}"
