"""The auditor's ledger browser: the API's events with its filters, the verify badge, and an export verified offline.

The export is checked by ``python -m sandbox audit verify-export`` (through click's runner): intact, it
passes; with one event's details changed, an event left out, or a checkpoint's signature from another
key, it fails at that event.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from crypto import ledger as ledger_crypto
from crypto.ledger_segment import verify_segment
from sandbox.cli import main
from sandbox.db import get_db_of
from sandbox.models import LedgerEvent
from tests.conftest import World, auth
from tests.sandbox.console.kit import API, People, signed_in_client, text_of


@pytest.fixture
def auditor(app: Flask, people: People) -> FlaskClient:
    return signed_in_client(app, people.auditor)


def seqs_shown(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', page)]


def api_events(world: World, **query: Any) -> list[dict[str, Any]]:
    response = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"limit": 1000} | query)
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def test_the_ledger_page_shows_the_apis_events_translated_with_a_green_badge(world: World, auditor: FlaskClient) -> None:
    page = text_of(auditor, "/ledger")
    assert seqs_shown(page) == [e["seq"] for e in api_events(world)][:50]
    assert 'data-verified="ok"' in page
    assert "校验通过" in page
    assert '<td data-action="org.create">创建组织</td>' in page
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", page)
    english = text_of(auditor, "/ledger?lang=en")
    assert '<td data-action="org.create">organisation created</td>' in english
    assert "Verified" in english
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}", english)


def test_the_ledger_pages_on(world: World, auditor: FlaskClient) -> None:
    for n in range(30):  # more events than a page holds
        created = world.client.post(f"{API}/orgs", headers=auth(world.admin), json={"name": f"org {n}", "kind": "enterprise"})
        assert created.status_code == 201
    assert len(api_events(world)) > 50
    first = text_of(auditor, "/ledger")
    (next_link,) = re.findall(r'href="([^"]+)" rel="next"', first)
    second = text_of(auditor, next_link.replace("&amp;", "&"))
    assert seqs_shown(second)[0] == seqs_shown(first)[-1] + 1


def _day(offset: int) -> str:
    """A day ``offset`` days from today: the console's days are Asia/Shanghai's, so a day either side covers any offset."""
    return (date.today() + timedelta(days=offset)).isoformat()


@pytest.mark.parametrize(
    ("name", "value", "keep"),
    [
        pytest.param("action", "org.create", lambda e, w: e["action"] == "org.create", id="event"),
        pytest.param("object_id", "bank", lambda e, w: e["object_id"] == w.ids["bank"], id="object"),
        pytest.param("since", -1, lambda e, w: True, id="since-yesterday"),
        pytest.param("until", 1, lambda e, w: True, id="until-tomorrow"),
        pytest.param("since", 2, lambda e, w: False, id="since-the-day-after-tomorrow"),
        pytest.param("until", -2, lambda e, w: False, id="until-two-days-ago"),
    ],
)
def test_the_filters_are_the_apis(world: World, auditor: FlaskClient, name: str, value: Any, keep: Any) -> None:
    shown = _day(value) if isinstance(value, int) else world.ids.get(value, value)
    page = text_of(auditor, "/ledger", query_string={name: shown})
    expected = [e["seq"] for e in api_events(world) if keep(e, world)]
    assert seqs_shown(page) == expected[:50]
    if not expected:
        assert "没有符合筛选条件的事件" in page


def test_the_api_filters_events_by_action_object_and_time(world: World) -> None:
    assert {e["action"] for e in api_events(world, action="user.create")} == {"user.create"}
    assert {e["object_id"] for e in api_events(world, object_id=world.ids["audit"])} == {world.ids["audit"]}
    assert api_events(world, since="2999-01-01T00:00:00+00:00") == []
    assert len(api_events(world, until="2999-01-01")) == len(api_events(world))
    bad = world.client.get(f"{API}/audit/events", headers=auth(world.auditor), query_string={"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.json["error"]["details"]["problems"][0]["field"] == "since"


@pytest.mark.parametrize("query", [{"since": "not-a-day"}, {"until": "2026-13-40"}, {"object_id": "x" * 65}, {"after": "-1"}])
def test_a_bad_filter_is_shown_in_the_page(auditor: FlaskClient, query: dict[str, str]) -> None:
    page = text_of(auditor, "/ledger", status=400, query_string=query)
    assert "筛选条件无效" in page
    assert 'role="alert"' in page


def test_a_tampered_ledger_turns_the_badge_red(app: Flask, world: World, auditor: FlaskClient) -> None:
    with get_db_of(app).writing() as session:
        event = session.scalars(select(LedgerEvent).where(LedgerEvent.seq == 3)).one()
        event.details = event.details.replace("}", ',"forged":1}', 1)
    page = text_of(auditor, "/ledger")
    assert 'data-verified="bad"' in page
    assert "哈希链自第 3 条事件起不再完好" in page
    assert world.client.get(f"{API}/audit/verify", headers=auth(world.auditor)).json["first_bad_seq"] == 3


def export(client: FlaskClient, **query: Any) -> dict[str, Any]:
    response = client.get("/ledger/export", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="ledger-')
    return dict(json.loads(response.get_data(as_text=True)))


def verify_export(tmp_path: Path, segment: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(segment), encoding="utf-8")
    result = CliRunner().invoke(main, ["audit", "verify-export", str(path), *args])
    return result.exit_code, json.loads(result.output)


def test_an_export_holds_the_apis_events_and_verifies_offline(world: World, auditor: FlaskClient, tmp_path: Path) -> None:
    segment = export(auditor, first=5, last=20)
    assert [e["seq"] for e in segment["events"]] == list(range(5, 21))
    assert segment["events"] == [e for e in api_events(world) if 5 <= e["seq"] <= 20]  # the API's JSON
    assert [c["seq"] for c in segment["checkpoints"]] == list(range(5, 21))  # a checkpoint per event (the default)
    pem = tmp_path / "domain.pem"
    pem.write_text(segment["public_key_pem"], encoding="utf-8")
    code, report = verify_export(tmp_path, segment, "--public-key", str(pem))
    assert code == 0, report
    assert report["ok"] is True
    assert (report["first"], report["last"], report["signed_up_to"]) == (5, 20, 20)
    assert report["public_key_fingerprint"] == segment["public_key_fingerprint"]
    whole = export(auditor)
    assert whole["first"] == 1
    assert whole["last"] == max(e["seq"] for e in api_events(world))


def _changed_details(segment: dict[str, Any]) -> None:
    segment["events"][3]["details"]["forged"] = 1


def _dropped_event(segment: dict[str, Any]) -> None:
    del segment["events"][3]


def _foreign_signature(segment: dict[str, Any]) -> None:
    private, _ = ledger_crypto.generate_signing_key()
    checkpoint = segment["checkpoints"][3]
    signature = ledger_crypto.sign(private, ledger_crypto.checkpoint_message(checkpoint["seq"], checkpoint["head_hash"]))
    checkpoint["signature"] = base64.b64encode(signature).decode()


def _unsigned_end(segment: dict[str, Any]) -> None:
    del segment["checkpoints"][-1]


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "problem"),
    [
        pytest.param(_changed_details, 4, "event hash does not match its content", id="changed-details"),
        pytest.param(_dropped_event, 4, "the events are not consecutive", id="dropped-event"),
        pytest.param(_foreign_signature, 4, "checkpoint signature is not valid", id="foreign-signature"),
        pytest.param(_unsigned_end, 10, "no signed checkpoint covers the segment's last event", id="unsigned-end"),
    ],
)
def test_a_tampered_export_fails_offline_verification(
    auditor: FlaskClient, tmp_path: Path, tamper: Any, bad_seq: int, problem: str
) -> None:
    segment = export(auditor, first=1, last=10)
    tamper(segment)
    code, report = verify_export(tmp_path, segment)
    assert code == 1
    assert (report["ok"], report["first_bad_seq"], report["problem"]) == (False, bad_seq, problem)


def test_verify_segment_needs_the_signing_key_it_is_given(auditor: FlaskClient) -> None:
    segment = export(auditor, first=1, last=5)
    _, other_public = ledger_crypto.generate_signing_key()
    report = verify_segment(segment["events"], segment["checkpoints"], other_public)
    assert not report.ok
    assert report.problem == "checkpoint signature is not valid"


@pytest.mark.parametrize("query", [{"first": "0"}, {"first": "9", "last": "3"}, {"first": "x"}])
def test_a_bad_export_range_is_a_400_page(auditor: FlaskClient, query: dict[str, str]) -> None:
    page = text_of(auditor, "/ledger/export", status=400, query_string=query)
    assert "<html" in page


@pytest.mark.parametrize("role", ["analyst", "steward", "admin"])
def test_only_auditors_open_the_ledger(app: Flask, people: People, role: str) -> None:
    client = signed_in_client(app, getattr(people, role))
    assert client.get("/ledger").status_code == 403
    assert client.get("/ledger/export").status_code == 403


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param("not json", "not JSON", id="not-json"),
        pytest.param("[]", "format sandbox-ledger-segment-v1", id="not-an-object"),
        pytest.param('{"format": "other"}', "format sandbox-ledger-segment-v1", id="other-format"),
        pytest.param('{"format": "sandbox-ledger-segment-v1", "events": [], "checkpoints": []}', "no Ed25519 public key", id="no-key"),
        pytest.param(
            '{"format": "sandbox-ledger-segment-v1", "events": {}, "checkpoints": [], "public_key_pem": "PEM"}',
            "no Ed25519 public key",
            id="bad-key",
        ),
    ],
)
def test_verify_export_refuses_what_is_not_an_export(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(main, ["audit", "verify-export", str(path)])
    assert result.exit_code == 1
    assert says in result.output
