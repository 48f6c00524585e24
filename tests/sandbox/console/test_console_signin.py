"""Signing in to the console: password links, sessions, lockout, CSRF, signing out everywhere; programs keep their tokens."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from sandbox.db import get_db_of
from sandbox.models import PasswordLink, SigninFailures, User
from sandbox.service import people
from tests.conftest import PG_URL, World, auth
from tests.sandbox.console.kit import (
    API,
    PASSWORD,
    csrf_of,
    give_password,
    password_link,
    sign_in,
    signed_in_client,
)

WRONG = "not the password at all"
MAX_FAILURES = 5  # CONSOLE_MAX_FAILED_SIGNINS's default


@pytest.fixture
def analyst_login(app: Flask, world: World) -> str:
    give_password(app, world, world.ids["analyst_user"], "analyst")
    return "analyst"


def test_a_person_signs_in_with_the_password_set_through_the_link(app: Flask, world: World, analyst_login: str) -> None:
    client = app.test_client()
    assert client.get("/catalogue").headers["Location"] == "/sign-in?next=/catalogue"
    response = sign_in(client, analyst_login, next_path="/catalogue")
    assert response.status_code == 302
    assert response.headers["Location"] == "/catalogue"
    assert client.get("/catalogue").status_code == 200


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_session_cookie_is_httponly_and_samesite_and_secure_on_https(app: Flask, analyst_login: str, scheme: str) -> None:
    base = f"{scheme}://localhost"
    client = app.test_client()
    form = client.get("/sign-in", base_url=base).get_data(as_text=True)
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    data = {"csrf_token": token, "login": analyst_login, "password": PASSWORD}
    # On HTTPS, Flask-WTF also wants a Referer of this site (a forged request from another site has none).
    response = client.post("/sign-in", data=data, base_url=base, headers={"Referer": f"{base}/sign-in"})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("sandbox_session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "expires"} <= attributes
    assert "SameSite=Lax" in cookie
    assert ("secure" in attributes) is (scheme == "https")


def test_the_link_is_stored_as_a_hash_works_once_and_not_after_a_newer_link(app: Flask, world: World) -> None:
    first = password_link(world, world.ids["analyst_user"], "analyst")
    second = password_link(world, world.ids["analyst_user"], "analyst")
    token = second.rsplit("/", 1)[1]
    with get_db_of(app).sessions() as session:
        stored = set(session.scalars(select(PasswordLink.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored
    client = app.test_client()
    assert client.get(first).status_code == 404  # voided by the newer link
    response = client.post(second, data={"csrf_token": csrf_of(client, second), "password": PASSWORD, "again": PASSWORD})
    assert response.status_code == 302
    assert client.get(second).status_code == 404  # used
    assert client.post(second, data={"csrf_token": csrf_of(client), "password": PASSWORD, "again": PASSWORD}).status_code == 404


@pytest.mark.skipif(PG_URL is None, reason="SQLite serialises writers before they read; the race needs PostgreSQL")
def test_two_uses_of_one_link_at_once_set_one_password(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    path = password_link(world, world.ids["analyst_user"], "analyst")
    real, barrier, calls = people.open_link, threading.Barrier(2, timeout=10), threading.local()

    def both_read_first(*args: Any, **kwargs: Any) -> Any:
        calls.n = getattr(calls, "n", 0) + 1
        if calls.n == 2:  # the use's own read, in its transaction: both reach it before either writes
            barrier.wait()
        return real(*args, **kwargs)

    clients = {password: app.test_client() for password in (PASSWORD, PASSWORD + " two")}
    tokens = {password: csrf_of(client, path) for password, client in clients.items()}
    monkeypatch.setattr(people, "open_link", both_read_first)
    answers: dict[str, int] = {}

    def use(password: str) -> None:
        data = {"csrf_token": tokens[password], "password": password, "again": password}
        answers[password] = clients[password].post(path, data=data).status_code

    threads = [threading.Thread(target=use, args=(password,)) for password in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert sorted(answers.values()) == [302, 404]
    (winner,) = [password for password, code in answers.items() if code == 302]
    assert sign_in(app.test_client(), "analyst", winner).status_code == 302
    assert sign_in(app.test_client(), "analyst", next(p for p in clients if p != winner)).status_code == 401


def test_an_expired_link_is_refused(app: Flask, world: World) -> None:
    path = password_link(world, world.ids["analyst_user"], "analyst")
    with get_db_of(app).writing() as session:
        for link in session.scalars(select(PasswordLink)):
            link.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    page = app.test_client().get(path)
    assert page.status_code == 404
    assert "该链接无效、已被使用或已过期" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("password", "again", "message"),
    [
        pytest.param("short", "short", "密码至少需要 12 个字符。", id="too-short"),
        pytest.param(PASSWORD, PASSWORD + "x", "两次输入的密码不一致。", id="differ"),
        pytest.param("x" * 300, "x" * 300, "密码最多 256 个字符。", id="too-long"),
    ],
)
def test_a_bad_new_password_is_refused_and_the_link_still_works(app: Flask, world: World, password: str, again: str, message: str) -> None:
    path = password_link(world, world.ids["analyst_user"], "analyst")
    client = app.test_client()
    response = client.post(path, data={"csrf_token": csrf_of(client, path), "password": password, "again": again})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert client.get(path).status_code == 200


def test_the_link_api_refuses_a_taken_login_and_a_bad_one(app: Flask, world: World) -> None:
    password_link(world, world.ids["analyst_user"], "analyst")
    taken = world.client.post(
        f"{API}/users/{world.ids['steward_user']}/password-link", headers=auth(world.admin), json={"login": "analyst"}
    )
    assert taken.status_code == 409, taken.json
    assert taken.json["error"]["details"] == {"field": "login"}
    bad = world.client.post(f"{API}/users/{world.ids['steward_user']}/password-link", headers=auth(world.admin), json={"login": "Bad Name"})
    assert bad.status_code == 400, bad.json


def test_the_link_is_on_the_ledger_without_its_token(app: Flask, world: World) -> None:
    path = password_link(world, world.ids["analyst_user"], "analyst")
    token = urlsplit(path).path.rsplit("/", 1)[1]
    events = world.client.get(f"{API}/audit/events", headers=auth(world.auditor)).get_data(as_text=True)
    assert "user.password_link" in events
    assert token not in events


def _failed(client_response_text: str) -> bool:
    return "登录名或密码错误。" in client_response_text


def _locked(client_response_text: str) -> bool:
    return "该登录名失败次数过多。请在" in client_response_text


@pytest.mark.parametrize("login", ["analyst", "nobody-has-this-login"], ids=["known", "unknown"])
def test_lockout_after_repeated_failures_looks_the_same_for_unknown_logins(app: Flask, analyst_login: str, login: str) -> None:
    client = app.test_client()
    for _ in range(MAX_FAILURES - 1):
        response = sign_in(client, login, WRONG)
        assert response.status_code == 401
        assert _failed(response.get_data(as_text=True))
    response = sign_in(client, login, WRONG)
    assert response.status_code == 401
    assert _locked(response.get_data(as_text=True))
    # Locked: even the right password is refused, with the same message.
    response = sign_in(client, login, PASSWORD)
    assert response.status_code == 401
    assert _locked(response.get_data(as_text=True))


def test_the_lock_lifts_after_its_time_and_a_success_resets_the_count(app: Flask, analyst_login: str) -> None:
    client = app.test_client()
    for _ in range(MAX_FAILURES):
        sign_in(client, analyst_login, WRONG)
    with get_db_of(app).writing() as session:
        (row,) = session.scalars(select(SigninFailures))
        row.locked_until = datetime.now(UTC) - timedelta(seconds=1)
    assert sign_in(client, analyst_login).status_code == 302
    with get_db_of(app).sessions() as session:
        assert session.scalars(select(SigninFailures)).all() == []


def test_a_form_without_its_csrf_token_is_refused(app: Flask, analyst_login: str) -> None:
    client = app.test_client()
    response = client.post("/sign-in", data={"login": analyst_login, "password": PASSWORD})
    assert response.status_code == 400
    assert "表单已过期或并非来自本站" in response.get_data(as_text=True)
    assert client.get("/catalogue").status_code == 302  # not signed in
    signed = signed_in_client(app, analyst_login)
    forged = signed.post("/sign-out-everywhere", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert signed.get("/catalogue").status_code == 200  # still signed in: the forged request did nothing
    htmx = signed.post("/sign-out-everywhere", headers={"HX-Request": "true"})
    assert htmx.status_code == 400


def test_an_htmx_request_with_the_csrf_header_is_accepted(app: Flask, analyst_login: str) -> None:
    client = signed_in_client(app, analyst_login)
    token = csrf_of(client, "/catalogue")
    response = client.post("/sign-out-everywhere", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 302


def test_signing_out_everywhere_ends_every_session_but_not_the_api_tokens(app: Flask, world: World, analyst_login: str) -> None:
    laptop, phone = signed_in_client(app, analyst_login), signed_in_client(app, analyst_login)
    response = laptop.post("/sign-out-everywhere", data={"csrf_token": csrf_of(laptop, "/catalogue")})
    assert response.status_code == 302
    assert phone.get("/catalogue").status_code == 302
    assert laptop.get("/catalogue").status_code == 302
    assert world.client.get(f"{API}/me", headers=auth(world.analyst)).status_code == 200
    assert signed_in_client(app, analyst_login).get("/catalogue").status_code == 200


def test_signing_out_ends_this_session_only(app: Flask, analyst_login: str) -> None:
    laptop, phone = signed_in_client(app, analyst_login), signed_in_client(app, analyst_login)
    assert laptop.post("/sign-out", data={"csrf_token": csrf_of(laptop, "/catalogue")}).status_code == 302
    assert laptop.get("/catalogue").status_code == 302
    assert phone.get("/catalogue").status_code == 200


def test_a_new_password_ends_older_sessions(app: Flask, world: World, analyst_login: str) -> None:
    old = signed_in_client(app, analyst_login)
    give_password(app, world, world.ids["analyst_user"], analyst_login, PASSWORD + "!")
    assert old.get("/catalogue").status_code == 302
    assert sign_in(app.test_client(), analyst_login).status_code == 401


def test_the_password_is_stored_as_an_argon2id_hash(app: Flask, analyst_login: str) -> None:
    with get_db_of(app).sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.login == analyst_login))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_the_session_cookie_does_not_authenticate_the_api(app: Flask, analyst_login: str) -> None:
    client = signed_in_client(app, analyst_login)
    response = client.get(f"{API}/me")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/x",
    ],
)
def test_after_signing_in_only_a_local_path_is_followed(app: Flask, analyst_login: str, target: str) -> None:
    response = sign_in(app.test_client(), analyst_login, next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example"])
def test_the_language_form_goes_back_to_a_local_path_only(app: Flask, target: str) -> None:
    client = app.test_client()
    response = client.post("/language", data={"csrf_token": csrf_of(client), "lang": "en", "next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_production_hashes_use_the_default_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real hasher, not the tests' cheap one
    stored = people.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert people.password_matches(stored, PASSWORD)
    assert not people.password_matches(stored, WRONG)
    assert not people.password_matches(None, PASSWORD)
