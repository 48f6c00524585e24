"""Consent lists: the bureau's steward keeps them; the grant's enterprise sees counts; auditors see everything; the ledger sees digests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from sandbox.db import get_db_of
from sandbox.models import Consent
from sandbox.service.consents import entities_digest
from tests.conftest import World, auth
from tests.sandbox.jobkit import events
from tests.sandbox.scorekit import API, person, register, revoke, score_grant, upload_persons

ENTITIES = [person(p) for p in range(1, 6)]


@pytest.fixture
def grant_id(world: World, tmp_path: Path) -> str:
    return score_grant(world, upload_persons(world, tmp_path)["id"])


def listing(world: World, grant_id: str, role: str = "steward", **query: Any) -> Any:
    return world.client.get(f"{API}/grants/{grant_id}/consents", headers=auth(world.token(role)), query_string=query)


def test_the_steward_registers_consents(world: World, grant_id: str) -> None:
    response = register(world, grant_id, [*ENTITIES, ENTITIES[0]])
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["entities"], body["registered"], body["renewed"]) == (5, 5, 0)
    assert body["entities_sha256"] == entities_digest(ENTITIES)
    again = register(world, grant_id, ENTITIES[:2], days=60).json
    assert (again["registered"], again["renewed"]) == (0, 2)
    items = {i["entity"]: i for i in listing(world, grant_id).json["items"]}
    assert items[ENTITIES[0]]["valid_until"] > items[ENTITIES[4]]["valid_until"]


def test_valid_until_must_lie_in_the_future(world: World, grant_id: str) -> None:
    assert register(world, grant_id, ENTITIES, days=-1).status_code == 400
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    response = world.client.post(
        f"{API}/grants/{grant_id}/consents", headers=auth(world.steward), json={"entities": ENTITIES, "valid_until": naive}
    )
    assert response.status_code == 201, response.json  # read as UTC


@pytest.mark.parametrize(
    "entities",
    [[], [""], ["x" * 201], ["ok", 7], [person(1)] * 100_001],
    ids=["empty", "empty text", "too long", "not text", "too many"],
)
def test_bad_entity_lists_are_400(world: World, grant_id: str, entities: list[Any]) -> None:
    response = register(world, grant_id, entities)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "validation_error"


@pytest.mark.parametrize(("role", "status"), [("analyst", 403), ("auditor", 403), ("other_steward", 404), ("other_analyst", 403)])
def test_only_the_bureaus_steward_registers_and_revokes(world: World, grant_id: str, role: str, status: int) -> None:
    assert register(world, grant_id, ENTITIES, token=world.token(role)).status_code == status
    assert revoke(world, grant_id, ENTITIES, token=world.token(role)).status_code == status


def test_another_bureaus_steward_cannot_tell_the_grant_exists(world: World, grant_id: str) -> None:
    theirs = register(world, grant_id, ENTITIES, token=world.other_steward)
    unknown = register(world, "00000000-0000-4000-8000-000000000000", ENTITIES, token=world.other_steward)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json == unknown.json
    assert listing(world, grant_id, "other_steward").json == listing(world, "00000000-0000-4000-8000-000000000000", "other_steward").json


def test_statuses_and_counts(app: Flask, world: World, grant_id: str) -> None:
    register(world, grant_id, ENTITIES)
    assert revoke(world, grant_id, [ENTITIES[0], person(77)]).json == {
        "grant_id": grant_id,
        "entities": 2,
        "revoked": 1,
        "without_consent": 1,
        "entities_sha256": entities_digest([ENTITIES[0], person(77)]),
    }
    with get_db_of(app).writing() as session:
        session.execute(update(Consent).where(Consent.entity == ENTITIES[1]).values(valid_until=Consent.created_at))
    for role in ("steward", "auditor"):
        body = listing(world, grant_id, role).json
        assert body["counts"] == {"active": 3, "expired": 1, "revoked": 1}
        statuses = {i["entity"]: i["status"] for i in body["items"]}
        assert statuses == {ENTITIES[0]: "revoked", ENTITIES[1]: "expired", **dict.fromkeys(ENTITIES[2:], "active")}
    register(world, grant_id, ENTITIES[:1])  # consenting again after a revocation
    assert listing(world, grant_id).json["counts"] == {"active": 4, "expired": 1, "revoked": 0}


def test_the_grants_enterprise_sees_counts_only(world: World, grant_id: str) -> None:
    register(world, grant_id, ENTITIES)
    response = listing(world, grant_id, "analyst")
    assert response.status_code == 200, response.json
    assert response.json["items"] is None
    assert response.json["counts"] == {"active": 5, "expired": 0, "revoked": 0}
    assert "ID0" not in response.get_data(as_text=True)
    assert listing(world, grant_id, "other_analyst").status_code == 404


def test_the_list_pages_in_identifier_order(world: World, grant_id: str) -> None:
    register(world, grant_id, list(reversed(ENTITIES)))
    first = listing(world, grant_id, limit=2).json
    assert [i["entity"] for i in first["items"]] == ENTITIES[:2]
    assert first["next_after"] == ENTITIES[1]
    rest = listing(world, grant_id, limit=10, after=first["next_after"]).json
    assert [i["entity"] for i in rest["items"]] == ENTITIES[2:]
    assert rest["next_after"] is None


def test_a_closed_grant_takes_no_new_consents_but_revocations(world: World, grant_id: str) -> None:
    register(world, grant_id, ENTITIES)
    response = world.client.post(f"{API}/grants/{grant_id}/revoke", headers=auth(world.steward), json={"reason": "scenario ended"})
    assert response.status_code == 200, response.json
    assert register(world, grant_id, ENTITIES).status_code == 409
    assert revoke(world, grant_id, ENTITIES).json["revoked"] == 5


def test_the_ledger_records_counts_and_digests_never_identifiers(world: World, grant_id: str) -> None:
    register(world, grant_id, ENTITIES)
    revoke(world, grant_id, ENTITIES[:2])
    listing(world, grant_id, "auditor")
    found = [e for e in events(world) if e["action"].startswith("consent.")]
    assert [e["action"] for e in found] == ["consent.register", "consent.revoke", "consent.view"]
    assert found[0]["details"]["entities_sha256"] == entities_digest(ENTITIES)
    assert found[1]["details"] == {"entities": 2, "revoked": 2, "without_consent": 0, "entities_sha256": entities_digest(ENTITIES[:2])}
    assert found[2]["details"] == {"entities_shown": 5}
    assert all(e["object_id"] == grant_id for e in found)
    assert "ID0" not in str(found)
