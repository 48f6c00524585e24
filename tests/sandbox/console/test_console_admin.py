"""The admin's pages: organisations, users, tokens and password links through the API's own functions.

A token or link is shown once, in the answer to the form that made it, and works; the lists show what
the API lists; bad input is a page with the form and its error (never a 500), and every form needs its
CSRF token.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import World, auth
from tests.sandbox.console.kit import API, People, csrf_of, signed_in_client, text_of


@pytest.fixture
def admin(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.admin)


def post(client: FlaskClient, path: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_of(client, "/admin/orgs")} | form)


def shown_secret(page: str, box: str) -> str:
    (found,) = re.findall(rf'<div class="secret" role="status" id="{box}">.*?<p><code>([^<]+)</code></p>', page, re.S)
    return str(found)


def test_the_organisations_are_the_apis_and_an_admin_creates_one(world: World, admin: FlaskClient) -> None:
    page = text_of(admin, "/admin/orgs")
    api = world.client.get(f"{API}/orgs", headers=auth(world.admin)).json["items"]
    assert re.findall(r"<td><code>([0-9a-f-]{36})</code></td>", page) == [o["id"] for o in api]
    assert "审计机构" in page  # the kind, translated
    response = post(admin, "/admin/orgs", name="District Health Bureau", kind="bureau")
    assert response.status_code == 302
    assert "组织“District Health Bureau”已创建" in text_of(admin, "/admin/orgs")
    names = {o["name"]: o["kind"] for o in world.client.get(f"{API}/orgs", headers=auth(world.admin)).json["items"]}
    assert names["District Health Bureau"] == "bureau"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"name": "City Data Bureau", "kind": "bureau"}, "已存在同名组织", id="taken-name"),
        pytest.param({"name": "", "kind": "bureau"}, "请填写 1 至 200 个字符的名称", id="empty-name"),
        pytest.param({"name": "x" * 201, "kind": "bureau"}, "请填写 1 至 200 个字符的名称", id="long-name"),
        pytest.param({"name": "Ops", "kind": "operator"}, "请填写 1 至 200 个字符的名称", id="operator-kind"),
    ],
)
def test_a_bad_organisation_is_shown_in_the_page(world: World, admin: FlaskClient, form: dict[str, str], message: str) -> None:
    before = world.client.get(f"{API}/orgs", headers=auth(world.admin)).json["items"]
    response = post(admin, "/admin/orgs", **form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert world.client.get(f"{API}/orgs", headers=auth(world.admin)).json["items"] == before


def test_a_new_users_token_is_shown_once_and_works(world: World, admin: FlaskClient) -> None:
    response = post(admin, "/admin/users", name="New Analyst", org_id=world.ids["bank"], role="analyst")
    assert response.status_code == 201
    token = shown_secret(response.get_data(as_text=True), "new-token")
    assert 'value="New Analyst"' not in response.get_data(as_text=True)  # the form is empty again
    me = world.client.get(f"{API}/me", headers=auth(token)).json
    assert (me["name"], me["role"], me["org_id"]) == ("New Analyst", "analyst", world.ids["bank"])
    listed = text_of(admin, "/admin/users")
    assert token not in listed
    assert "New Analyst" in listed
    assert token not in text_of(admin, f"/admin/users/{me['id']}")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param({"name": "A", "org_id": "bank", "role": "steward"}, "请选择该组织类型所允许的角色", id="role-not-of-the-org"),
        pytest.param({"name": "A", "org_id": "nowhere", "role": "analyst"}, "请从列表中选择组织", id="unknown-org"),
        pytest.param({"name": "A", "org_id": "bank", "role": "king"}, "请选择该组织类型所允许的角色", id="unknown-role"),
        pytest.param({"name": "", "org_id": "bank", "role": "analyst"}, "请填写 1 至 200 个字符的名称", id="empty-name"),
    ],
)
def test_a_bad_user_is_shown_in_the_page(world: World, admin: FlaskClient, form: dict[str, str], message: str) -> None:
    before = len(world.client.get(f"{API}/users", headers=auth(world.admin)).json["items"])
    form = form | {"org_id": world.ids.get(form["org_id"], str(uuid.uuid4()))}
    response = post(admin, "/admin/users", **form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert 'id="new-token"' not in page
    assert len(world.client.get(f"{API}/users", headers=auth(world.admin)).json["items"]) == before


def test_an_admin_issues_and_revokes_a_token(world: World, admin: FlaskClient) -> None:
    user_id = world.ids["analyst_user"]
    issued = post(admin, f"/admin/users/{user_id}/tokens")
    assert issued.status_code == 201
    token = shown_secret(issued.get_data(as_text=True), "new-token")
    assert world.client.get(f"{API}/me", headers=auth(token)).status_code == 200
    page = text_of(admin, f"/admin/users/{user_id}")
    assert token not in page
    api = world.client.get(f"{API}/users/{user_id}/tokens", headers=auth(world.admin)).json["items"]
    assert re.findall(r'<tr data-token="([^"]+)">', page) == [t["id"] for t in api]
    newest = api[-1]["id"]
    revoked = post(admin, f"/admin/users/{user_id}/tokens/{newest}/revoke")
    assert revoked.status_code == 302
    assert world.client.get(f"{API}/me", headers=auth(token)).status_code == 401
    assert world.client.get(f"{API}/me", headers=auth(world.analyst)).status_code == 200  # the other token still works
    assert f"令牌 {newest[:8]} 已吊销" in text_of(admin, f"/admin/users/{user_id}")


def test_a_password_link_is_shown_once_and_sets_a_password(app: Flask, world: World, admin: FlaskClient) -> None:
    user_id = world.ids["steward_user"]
    response = post(admin, f"/admin/users/{user_id}/password-link", login="city-steward")
    assert response.status_code == 201
    url = shown_secret(response.get_data(as_text=True), "new-link")
    path = urlsplit(url).path
    assert path.startswith("/set-password/")
    assert app.test_client().get(path).status_code == 200
    assert path not in text_of(admin, f"/admin/users/{user_id}")


@pytest.mark.parametrize(
    ("login", "status", "message"),
    [
        pytest.param("Bad Name", 400, "登录名为 2 至 64 个字符", id="bad-login"),
        pytest.param("analyst", 409, "该登录名已被他人使用", id="taken-login"),
    ],
)
def test_a_bad_password_link_is_shown_in_the_page(world: World, admin: FlaskClient, login: str, status: int, message: str) -> None:
    response = post(admin, f"/admin/users/{world.ids['steward_user']}/password-link", login=login)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert message in page
    assert 'id="new-link"' not in page


@pytest.mark.parametrize("path", ["/admin/users/{id}", "/admin/users/{id}/tokens", "/admin/users/{id}/tokens/{id}/revoke"])
def test_an_unknown_user_or_token_is_a_404(admin: FlaskClient, path: str) -> None:
    unknown = path.format(id=uuid.uuid4())
    response = admin.get(unknown) if path == "/admin/users/{id}" else post(admin, unknown)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/admin/orgs", "/admin/users", "/admin/users/USER/tokens", "/admin/users/USER/password-link", "/admin/users/USER/tokens/TOKEN/revoke"],
)
def test_every_admin_form_needs_its_csrf_token(world: World, admin: FlaskClient, path: str) -> None:
    token_id = world.client.get(f"{API}/users/{world.ids['analyst_user']}/tokens", headers=auth(world.admin)).json["items"][0]["id"]
    target = path.replace("USER", world.ids["analyst_user"]).replace("TOKEN", token_id)
    before = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"limit": 1000}).json["items"]
    response = admin.post(target, data={"name": "Forged Org", "kind": "bureau", "login": "forged", "org_id": world.ids["bank"]})
    assert response.status_code == 400
    assert "表单已过期或并非来自本站" in response.get_data(as_text=True)
    after = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"limit": 1000}).json["items"]
    assert after == before  # nothing happened
    assert world.client.get(f"{API}/me", headers=auth(world.analyst)).status_code == 200


@pytest.mark.parametrize("role", ["analyst", "steward", "auditor"])
def test_only_the_admin_opens_the_admin_pages(app: Flask, world: World, people: People, role: str) -> None:
    client = signed_in_client(app, getattr(people, role))
    for path in ("/admin/orgs", "/admin/users", f"/admin/users/{world.ids['analyst_user']}"):
        assert client.get(path).status_code == 403
    assert post(client, f"/admin/users/{world.ids['analyst_user']}/tokens").status_code == 403
    assert post(client, "/admin/orgs", name="Sneaky", kind="bureau").status_code == 403
    assert "Sneaky" not in str(world.client.get(f"{API}/orgs", headers=auth(world.admin)).json)
