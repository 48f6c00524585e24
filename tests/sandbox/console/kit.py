"""Helpers of the console's tests: people with passwords (through the admin's one-time link), signing in, CSRF tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import World, auth

API = "/api/v1"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/sign-in") -> str:
    """The CSRF token of a form on ``path`` (the same for every form of the client's session)."""
    page = client.get(path)
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)[:500]
    return match.group(1)


def password_link(world: World, user_id: str, login: str) -> str:
    """The admin's one-time link for ``user_id``, as a path on this site."""
    response = world.client.post(f"{API}/users/{user_id}/password-link", headers=auth(world.admin), json={"login": login})
    assert response.status_code == 201, response.json
    return urlsplit(response.json["url"]).path


def give_password(app: Flask, world: World, user_id: str, login: str, password: str = PASSWORD) -> None:
    """Set ``user_id``'s console password the way a person does: open the link, fill in the form."""
    client = app.test_client()
    path = password_link(world, user_id, login)
    response = client.post(path, data={"csrf_token": csrf_of(client, path), "password": password, "again": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def sign_in(client: FlaskClient, login: str, password: str = PASSWORD, next_path: str = "/") -> TestResponse:
    return client.post("/sign-in", data={"csrf_token": csrf_of(client), "login": login, "password": password, "next": next_path})


def user_id_of(world: World, role: str, org_id: str) -> str:
    users = world.client.get(f"{API}/users", headers=auth(world.admin)).json["items"]
    (user,) = [u for u in users if u["role"] == role and u["org_id"] == org_id]
    return str(user["id"])


@dataclass(frozen=True)
class People:
    """The world's people with console passwords: ``login`` per role name of ``World``."""

    analyst: str = "analyst"
    other_analyst: str = "other-analyst"
    steward: str = "steward"
    auditor: str = "auditor"
    admin: str = "admin"


def give_everyone_passwords(app: Flask, world: World) -> People:
    people = People()
    give_password(app, world, world.ids["analyst_user"], people.analyst)
    give_password(app, world, user_id_of(world, "analyst", world.ids["rival"]), people.other_analyst)
    give_password(app, world, world.ids["steward_user"], people.steward)
    give_password(app, world, user_id_of(world, "auditor", world.ids["audit"]), people.auditor)
    admin_id = world.client.get(f"{API}/me", headers=auth(world.admin)).json["id"]
    give_password(app, world, admin_id, people.admin)
    return people


def signed_in_client(app: Flask, login: str) -> FlaskClient:
    client = app.test_client()
    response = sign_in(client, login)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def text_of(client: FlaskClient, path: str, status: int = 200, **kwargs: Any) -> str:
    """The page at ``path``, which must answer ``status``."""
    response = client.get(path, **kwargs)
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:300])
    return response.get_data(as_text=True)
