"""The console's secrets: its session-signing key in the instance folder, made once, readable by its owner only;
and the tokens and password links the admin's pages make, shown once and never logged."""

from __future__ import annotations

import json
import logging
import re
import stat
from pathlib import Path

import pytest
from flask import Flask

from sandbox.console.signin import _instance_secret
from tests.conftest import World, auth
from tests.sandbox.console.kit import API, csrf_of, give_everyone_passwords, signed_in_client


def test_the_key_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "console-secret.key"
    first = _instance_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 64
    assert _instance_secret(path) == first


def test_a_key_left_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "console-secret.key"
    path.write_text("k" * 64, encoding="ascii")
    path.chmod(0o644)
    assert _instance_secret(path) == "k" * 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "console-secret.key"
    path.write_text("\n", encoding="ascii")
    with pytest.raises(RuntimeError, match="is empty"):
        _instance_secret(path)


# --- secrets the admin's pages make: shown once, never logged, never on the ledger nor in the cookie ---


def test_a_token_and_a_password_link_made_in_the_console_are_never_logged(
    app: Flask, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    admin = signed_in_client(app, give_everyone_passwords(app, world).admin)
    caplog.set_level(logging.DEBUG)
    user_id = world.ids["analyst_user"]
    token_page = admin.post(f"/admin/users/{user_id}/tokens", data={"csrf_token": csrf_of(admin, "/admin/orgs")})
    token = re.findall(r'id="new-token">.*?<code>([^<]+)</code>', token_page.get_data(as_text=True), re.S)[0]
    link_page = admin.post(f"/admin/users/{user_id}/password-link", data={"csrf_token": csrf_of(admin, "/admin/orgs"), "login": "ana"})
    url = re.findall(r'id="new-link">.*?<code>([^<]+)</code>', link_page.get_data(as_text=True), re.S)[0]
    link_token = url.rsplit("/", 1)[1]
    created = admin.post(
        "/admin/users", data={"csrf_token": csrf_of(admin, "/admin/orgs"), "name": "Third", "org_id": world.ids["bank"], "role": "analyst"}
    )
    user_token = re.findall(r'id="new-token">.*?<code>([^<]+)</code>', created.get_data(as_text=True), re.S)[0]
    secrets = [token, link_token, user_token]
    assert all(s.startswith("sbx_") for s in (token, user_token))
    logged = "\n".join(f"{r.getMessage()} {r.args} {getattr(r, '__dict__', {})}" for r in caplog.records)
    ledger = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"limit": 1000}).get_data(as_text=True)
    assert '"action":"token.issue"' in ledger.replace(" ", "")  # the issuing is on the ledger, without the secret
    assert '"action":"user.password_link"' in ledger.replace(" ", "")
    cookie = admin.get_cookie("sandbox_session")
    assert cookie is not None
    session = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
    for secret in secrets:
        assert secret not in logged
        assert secret not in ledger
        assert secret not in json.dumps(session, default=str)
        for page in ("/admin/users", f"/admin/users/{user_id}"):
            assert secret not in admin.get(page).get_data(as_text=True)
