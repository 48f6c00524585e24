"""The auditor's review queue in the console: what ``GET /api/v1/reviews`` shows, decisions through the API's own function.

A held job needs two auditors here (its policy's ``reviewers``): the first release leaves it held, the
same auditor cannot decide again, a second auditor's release releases it. A bad reason, a missing CSRF
token, another role, or an auditor of another bureau are refused, and none of them changes the job.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from sandbox.app import instance_of
from sandbox.db import get_db_of
from sandbox.models import Job, Review
from sandbox.runtime.worker import Worker
from tests.conftest import PUMS_POLICY, World, auth, make_user, request_grant
from tests.sandbox.access_requests import approve_body, job_body
from tests.sandbox.console.kit import API, People, csrf_of, give_password, signed_in_client, text_of

TWO_REVIEWERS = {**PUMS_POLICY, "release_mode": "always_review", "reviewers": 2}
REASON = "aggregates at race level are safe"


@pytest.fixture
def held(app: Flask, world: World, pums: dict[str, Any]) -> str:
    """A query job of the analyst, run by a worker and held for two reviewers."""
    grant = request_grant(world, [pums["id"]]).json
    approved = world.client.post(f"{API}/grants/{grant['id']}/approve", headers=auth(world.steward), json=approve_body(TWO_REVIEWERS))
    assert approved.status_code == 200, approved.json
    submitted = world.client.post(f"{API}/jobs", headers=auth(world.analyst), json=job_body(grant["id"]))
    assert submitted.status_code == 202, submitted.json
    assert Worker(instance_of(app)).run(once=True) == 1
    job_id = str(submitted.json["id"])
    assert status_of(world, job_id) == "held"
    return job_id


@pytest.fixture
def auditor(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.auditor)


@pytest.fixture
def second_auditor(app: Flask, world: World, people: People) -> FlaskClient:
    user_id, _ = make_user(world.client, world.admin, world.ids["audit"], "auditor", "second auditor")
    give_password(app, world, user_id, "auditor2")
    return signed_in_client(app, "auditor2")


def status_of(world: World, job_id: str) -> str:
    return str(world.client.get(f"{API}/jobs/{job_id}", headers=auth(world.auditor)).json["status"])


def decide(client: FlaskClient, job_id: str, **form: Any) -> Any:
    data = {"csrf_token": csrf_of(client, "/reviews"), "decision": "release", "reason": REASON} | form
    return client.post(f"/reviews/{job_id}", data=data)


def reviews_of(app: Flask, job_id: str) -> list[Review]:
    with get_db_of(app).sessions() as session:
        return list(session.scalars(select(Review).where(Review.job_id == job_id)))


def test_the_queue_lists_what_the_api_lists(world: World, auditor: FlaskClient, held: str) -> None:
    api = world.client.get(f"{API}/reviews", headers=auth(world.auditor)).json["items"]
    page = text_of(auditor, "/reviews")
    assert [item["job"]["id"] for item in api] == re.findall(r'<tr data-job="([^"]+)"', page) == [held]
    assert api[0]["reviewers_required"] == 2
    assert api[0]["decisions"] == []
    assert "已有 0 人决定，共需 2 人" in page


def test_the_review_page_shows_the_proposed_release_beside_the_raw_output_and_the_rules(
    world: World, auditor: FlaskClient, held: str
) -> None:
    page = text_of(auditor, f"/reviews/{held}")
    (item,) = world.client.get(f"{API}/reviews", headers=auth(world.auditor)).json["items"]
    assert 'id="proposed"' in page
    assert 'id="raw"' in page
    for column in item["raw"]["columns"]:
        assert f'<th scope="col">{column}</th>' in page  # the evidence columns too
    withheld = [n for n in item["proposed"]["notes"] if n["status"] != "pass"]
    assert page.count("data-withheld=") == len(withheld)
    assert "放行此输出需要 2 位不同的审核人" in page
    assert "policy version" not in page  # Chinese by default
    events = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"action": "review.view"}).json
    assert held in {e["object_id"] for e in events["items"]}  # the console's viewing is on the ledger, as the API's


def test_two_auditors_release_and_the_same_one_cannot_decide_twice(
    app: Flask, world: World, auditor: FlaskClient, second_auditor: FlaskClient, held: str
) -> None:
    first = decide(auditor, held)
    assert first.status_code == 302
    assert first.headers["Location"] == "/reviews"
    assert "在其他审核人作出决定之前，该输出仍待审核" in text_of(auditor, "/reviews")
    assert status_of(world, held) == "held"

    page = text_of(auditor, f"/reviews/{held}")
    assert 'id="decided-already"' in page
    assert 'name="decision"' not in page  # no form for a second decision
    again = decide(auditor, held, decision="reject", reason="changed my mind")
    assert again.status_code == 400
    assert "根据双人审核规则，须由另一位审核人决定" in again.get_data(as_text=True)
    assert [r.decision for r in reviews_of(app, held)] == ["release"]

    (item,) = world.client.get(f"{API}/reviews", headers=auth(world.auditor)).json["items"]
    assert [(d["reviewer_name"], d["decision"], d["reason"]) for d in item["decisions"]] == [("auditor", "release", REASON)]
    other = text_of(second_auditor, f"/reviews/{held}")
    assert 'data-decision="release"' in other  # a query job's review is not blinded: the page shows what the API shows
    assert REASON in other
    assert "已有 1 人决定，共需 2 人" in text_of(second_auditor, "/reviews")
    assert decide(second_auditor, held).status_code == 302
    assert status_of(world, held) == "released"
    assert "任务当前状态：已发布" in text_of(second_auditor, "/reviews")
    assert held not in text_of(second_auditor, "/reviews")


def test_returning_an_output_with_a_reason(app: Flask, world: World, auditor: FlaskClient, held: str) -> None:
    response = decide(auditor, held, decision="reject", reason="the scenario does not need race")
    assert response.status_code == 302
    assert status_of(world, held) == "rejected"
    result = world.client.get(f"{API}/jobs/{held}", headers=auth(world.analyst)).json
    assert result["reason"] == "the scenario does not need race"
    flashed = auditor.get(f"/reviews/{held}")  # no longer held: back to the queue, saying so
    assert flashed.status_code == 302
    assert "该输出已不再待审核" in text_of(auditor, "/reviews")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"reason": "x"}, "请填写 3 至 5000 个字符的理由", id="reason-too-short"),
        pytest.param({"reason": "y" * 5001}, "请填写 3 至 5000 个字符的理由", id="reason-too-long"),
        pytest.param({"decision": "approve"}, "请选择放行或退回该输出", id="unknown-decision"),
        pytest.param({"scope": "some", "outputs": "table"}, "请至少选择一项该任务拟放行的输出", id="outputs-of-a-query-job"),
    ],
)
def test_a_bad_decision_is_shown_in_the_page_and_changes_nothing(
    app: Flask, world: World, auditor: FlaskClient, held: str, form: dict[str, str], message: str
) -> None:
    response = decide(auditor, held, **form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert 'role="alert"' in page
    assert 'name="decision"' in page  # the form again
    assert reviews_of(app, held) == []
    assert status_of(world, held) == "held"


def test_a_decision_needs_its_csrf_token(app: Flask, world: World, auditor: FlaskClient, held: str) -> None:
    response = auditor.post(f"/reviews/{held}", data={"decision": "release", "reason": REASON})
    assert response.status_code == 400
    assert "表单已过期或并非来自本站" in response.get_data(as_text=True)
    assert reviews_of(app, held) == []


def test_an_auditor_of_another_bureau_gets_a_404_like_an_unknown_job(app: Flask, world: World, people: People, held: str) -> None:
    user_id, token = make_user(world.client, world.admin, world.ids["bureau2"], "auditor", "bureau auditor")
    assert world.client.get(f"{API}/jobs/{held}", headers=auth(token)).status_code == 404  # as the API says
    give_password(app, world, user_id, "bureau-auditor")
    client = signed_in_client(app, "bureau-auditor")
    unknown = str(uuid.uuid4())
    theirs = text_of(client, f"/reviews/{held}", status=404)
    assert theirs.replace(held, "ID") == text_of(client, f"/reviews/{unknown}", status=404).replace(unknown, "ID")
    assert held not in text_of(client, "/reviews")
    posted = client.post(f"/reviews/{held}", data={"csrf_token": csrf_of(client, "/reviews"), "decision": "release", "reason": REASON})
    assert posted.status_code == 404
    assert reviews_of(app, held) == []


@pytest.mark.parametrize("role", ["analyst", "steward", "admin"])
def test_other_roles_may_not_open_the_queue_or_decide(app: Flask, world: World, people: People, held: str, role: str) -> None:
    client = signed_in_client(app, getattr(people, role))
    assert client.get("/reviews").status_code == 403
    assert client.get(f"/reviews/{held}").status_code == 403
    assert decide(client, held).status_code == 403
    assert reviews_of(app, held) == []


def test_a_blinded_review_shows_who_decided_but_not_what(
    app: Flask, world: World, auditor: FlaskClient, second_auditor: FlaskClient, held: str
) -> None:
    """A held job marked as a script's (no script runtime needed): its review is blinded, in the API and in the page."""
    with get_db_of(app).writing() as session:
        job = session.get(Job, held)
        assert job is not None
        job.kind = "script"
    secret_reason = "REASON-OF-THE-FIRST: race 5 is one person"
    assert decide(auditor, held, decision="reject", reason=secret_reason).status_code == 302
    assert status_of(world, held) == "held"  # a decision does not end a blinded review by itself
    (item,) = world.client.get(f"{API}/reviews", headers=auth(world.auditor)).json["items"]
    assert item["blinded"] is True
    assert [(d["reviewer_name"], d["decision"], d["reason"]) for d in item["decisions"]] == [("auditor", None, None)]
    page = text_of(second_auditor, f"/reviews/{held}")
    assert 'data-decision="blinded"' in page
    assert "审核完成前不显示" in page
    assert "脚本任务采用盲审" in page
    assert secret_reason not in page
    assert decide(second_auditor, held).status_code == 302
    assert status_of(world, held) == "rejected"  # complete: any rejection rejects
