"""Grants: requested by analysts, decided by the data's bureau with a reason, and nothing once expired or revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from core.errors import Forbidden
from core.values import JobKind
from sandbox.models import Grant
from sandbox.service.grants import active_policy
from tests.conftest import PUMS_POLICY, World, auth, request_grant

FUTURE = "2099-01-01T00:00:00Z"


def _approve(world: World, grant_id: str, policy: dict[str, Any] | None = None, expires_at: str = FUTURE, token: str | None = None) -> Any:
    return world.client.post(
        f"/api/v1/grants/{grant_id}/approve",
        headers=auth(token or world.steward),
        json={"policy": policy or PUMS_POLICY, "expires_at": expires_at},
    )


def _grant_row(app: Flask, grant_id: str) -> Grant:
    with app.app_context(), app.extensions["sandbox.db"].sessions() as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        return grant


def test_request_is_recorded_as_requested(grant: dict[str, Any], world: World, pums: dict[str, Any]) -> None:
    assert grant["status"] == "requested"
    assert grant["dataset_ids"] == [pums["id"]]
    assert grant["datasets"] == ["pums"]
    assert grant["org_id"] == world.analyst_org
    assert grant["bureau_org_id"] == world.steward_org
    assert grant["policy"] is None


def test_approve_sets_policy_version_and_expiry(grant: dict[str, Any], world: World, app: Flask) -> None:
    response = _approve(world, grant["id"])
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "approved"
    assert body["policy_version"] == 1
    assert body["policy"]["disclosure"]["threshold"] == 10
    assert body["policy"]["release_mode"] == "review_on_flag"
    policy, version = active_policy(_grant_row(app, grant["id"]), JobKind.QUERY)
    assert version == 1
    assert policy.disclosure.threshold == 10
    with pytest.raises(Forbidden):
        active_policy(_grant_row(app, grant["id"]), JobKind.SCRIPT)


@pytest.mark.parametrize(
    ("column", "use", "problem"),
    [
        ("pid", "plain", "an identifier column cannot be plain"),
        ("income", "plain", "a sensitive column cannot be plain"),
        ("wage", "measure", "unknown column"),
    ],
    ids=["identifier-plain", "sensitive-plain", "unknown-column"],
)
def test_policy_checked_against_schema(grant: dict[str, Any], world: World, column: str, use: str, problem: str) -> None:
    policy = {**PUMS_POLICY, "columns": {"pums": {**PUMS_POLICY["columns"]["pums"], column: use}}}
    response = _approve(world, grant["id"], policy)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "validation_error"
    assert column in response.json["error"]["message"]
    assert problem in response.json["error"]["message"]
    assert world.client.get(f"/api/v1/grants/{grant['id']}", headers=auth(world.analyst)).json["status"] == "requested"


def test_expiry_must_be_future_and_naive_is_utc(grant: dict[str, Any], world: World) -> None:
    assert _approve(world, grant["id"], expires_at="2001-01-01T00:00:00Z").status_code == 400
    naive = (datetime.now(UTC) + timedelta(days=3)).replace(tzinfo=None).isoformat()
    response = _approve(world, grant["id"], expires_at=naive)
    assert response.status_code == 200
    assert response.json["expires_at"].endswith("Z")


def test_reject_needs_a_reason_and_is_final(grant: dict[str, Any], world: World) -> None:
    path = f"/api/v1/grants/{grant['id']}"
    assert world.client.post(path + "/reject", headers=auth(world.steward), json={}).status_code == 400
    response = world.client.post(path + "/reject", headers=auth(world.steward), json={"reason": "scenario too broad"})
    assert response.status_code == 200
    assert response.json["status"] == "rejected"
    assert response.json["reason"] == "scenario too broad"
    assert _approve(world, grant["id"]).status_code == 409
    assert world.client.post(path + "/revoke", headers=auth(world.steward), json={"reason": "x" * 5}).status_code == 409


def test_revoked_grant_allows_nothing(grant: dict[str, Any], world: World, app: Flask) -> None:
    assert _approve(world, grant["id"]).status_code == 200
    response = world.client.post(f"/api/v1/grants/{grant['id']}/revoke", headers=auth(world.steward), json={"reason": "consent withdrawn"})
    assert response.status_code == 200
    assert response.json["status"] == "revoked"
    with pytest.raises(Forbidden, match="revoked"):
        active_policy(_grant_row(app, grant["id"]), JobKind.QUERY)


def test_expired_grant_allows_nothing(grant: dict[str, Any], world: World, app: Flask) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _approve(world, grant["id"], expires_at=soon).status_code == 200
    row = _grant_row(app, grant["id"])
    assert active_policy(row, JobKind.QUERY)[1] == 1
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(Forbidden, match="expired"):
        active_policy(row, JobKind.QUERY, now=later)


def test_requested_grant_allows_nothing(grant: dict[str, Any], app: Flask) -> None:
    with pytest.raises(Forbidden, match="requested"):
        active_policy(_grant_row(app, grant["id"]), JobKind.QUERY)


def test_request_validation(world: World, pums: dict[str, Any]) -> None:
    assert request_grant(world, [pums["id"], pums["id"]]).status_code == 400
    assert request_grant(world, ["00000000-0000-0000-0000-000000000000"]).status_code == 404
    bad_kind = world.client.post(
        "/api/v1/grants",
        headers=auth(world.analyst),
        json={"dataset_ids": [pums["id"]], "scenario": "a long enough scenario", "requested": {"job_kinds": ["mining"]}},
    )
    assert bad_kind.status_code == 400
    bad_columns = world.client.post(
        "/api/v1/grants",
        headers=auth(world.analyst),
        json={
            "dataset_ids": [pums["id"]],
            "scenario": "a long enough scenario",
            "requested": {"job_kinds": ["query"], "columns": {"pums": ["salary"]}},
        },
    )
    assert bad_columns.status_code == 400
    assert "salary" in bad_columns.json["error"]["message"]


def test_grant_visibility(grant: dict[str, Any], world: World) -> None:
    for token in (world.analyst, world.steward, world.auditor):
        assert [g["id"] for g in world.client.get("/api/v1/grants", headers=auth(token)).json["items"]] == [grant["id"]]
    for token in (world.other_analyst, world.other_steward):
        assert world.client.get("/api/v1/grants", headers=auth(token)).json["items"] == []
        assert world.client.get(f"/api/v1/grants/{grant['id']}", headers=auth(token)).status_code == 404
    assert _approve(world, grant["id"], token=world.other_steward).status_code == 404


def test_bureau_auditor_sees_only_its_bureaus_grants(grant: dict[str, Any], world: World) -> None:
    from tests.conftest import make_user

    _, own = make_user(world.client, world.admin, world.steward_org, "auditor", "bureau supervisor")
    _, other = make_user(world.client, world.admin, world.ids["bureau2"], "auditor", "other supervisor")
    assert [g["id"] for g in world.client.get("/api/v1/grants", headers=auth(own)).json["items"]] == [grant["id"]]
    assert world.client.get("/api/v1/grants", headers=auth(other)).json["items"] == []
    assert world.client.get(f"/api/v1/grants/{grant['id']}", headers=auth(other)).status_code == 404
