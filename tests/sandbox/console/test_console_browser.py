"""The console in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

One browser for the module. The demo instance is made by ``python -m sandbox init --demo`` (as
``make run`` makes it) and served on a free local port; the demo analyst signs in with the password
from ``demo-passwords.env``, from the keyboard, and browses the catalogue (an htmx search, a
dataset's page) and their jobs in Chinese and in English. Every request the pages make is recorded:
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
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from sandbox import create_app
from sandbox.db import get_db_of
from sandbox.demo import passwords as demo_passwords
from sandbox.demo import tokens as demo_tokens

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
            "url": f"http://127.0.0.1:{server.server_port}",
            "password": demo_passwords.read(demo_passwords.path_in(instance))["analyst"],
            "token": demo_tokens.read(demo_tokens.path_in(instance))["analyst"],
            "steward_password": demo_passwords.read(demo_passwords.path_in(instance))["steward"],
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
    page.keyboard.type(demo["steward_password"])
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
