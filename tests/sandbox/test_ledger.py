"""The audit ledger: every change is recorded, and any edit, deletion, insertion or reordering is detected."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

import sandbox.service.ledger
from crypto import ledger as ledger_crypto
from crypto.keyring import KeyStore
from sandbox import keys
from sandbox.cli import main
from sandbox.db import get_db_of
from sandbox.service.ledger import Ledger, verify
from tests.conftest import PUMS_POLICY, World, auth, data_file, make_org


def _verify(world: World) -> dict[str, Any]:
    response = world.client.get("/api/v1/audit/verify", headers=auth(world.auditor))
    assert response.status_code == 200
    return dict(response.json)


def _events(world: World) -> list[dict[str, Any]]:
    items, after = [], 0
    while True:
        page = world.client.get(f"/api/v1/audit/events?after={after}&limit=7", headers=auth(world.auditor)).json
        items += page["items"]
        if page["next_after"] is None:
            return items
        after = page["next_after"]


@pytest.fixture
def history(world: World, pums: dict[str, Any], grant: dict[str, Any]) -> World:
    """A ledger with orgs, users, tokens, a dataset, a grant request and an approval."""
    response = world.client.post(
        f"/api/v1/grants/{grant['id']}/approve",
        headers=auth(world.steward),
        json={"policy": PUMS_POLICY, "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.json
    return world


def test_every_state_change_is_recorded(history: World) -> None:
    actions = [e["action"] for e in _events(history)]
    for action in (
        "org.create",
        "user.create",
        "token.issue",
        "dataset.create",
        "dataset.version.create",
        "grant.request",
        "grant.approve",
        "policy.create",
    ):
        assert action in actions
    assert [e["seq"] for e in _events(history)] == list(range(1, len(actions) + 1))
    report = _verify(history)
    assert report["ok"] is True
    assert report["length"] == len(actions)
    assert report["checkpoints"] == len(actions)


def test_events_hold_no_raw_value_or_secret(history: World) -> None:
    text_ = json.dumps(_events(history))
    for value in ("56000", "17000.0", "420500"):
        assert value not in text_
    for token in (history.admin, history.steward, history.analyst, history.auditor):
        assert token not in text_
        assert token[4:20] not in text_


def _tamper_edit(session: Session) -> None:
    session.execute(text("UPDATE ledger_events SET details = :d WHERE seq = 3"), {"d": '{"name":"forged"}'})


def _tamper_edit_actor(session: Session) -> None:
    session.execute(text("UPDATE ledger_events SET actor = 'someone-else' WHERE seq = 4"))


def _tamper_rehash(session: Session) -> None:
    """Edit and recompute this event's hash: the chain still breaks at the next event, the checkpoint here."""
    row = session.execute(text("SELECT * FROM ledger_events WHERE seq = 5")).mappings().one()
    body = {
        "seq": row["seq"],
        "ts": row["ts"],
        "actor": row["actor"],
        "action": "org.delete",
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "details": json.loads(row["details"]),
    }
    forged = ledger_crypto.event_hash(row["prev_hash"], body)
    session.execute(text("UPDATE ledger_events SET action = 'org.delete', hash = :h WHERE seq = 5"), {"h": forged})


def _tamper_delete_middle(session: Session) -> None:
    session.execute(text("DELETE FROM ledger_events WHERE seq = 6"))


def _tamper_delete_tail(session: Session) -> None:
    last = session.execute(text("SELECT max(seq) FROM ledger_events")).scalar_one()
    session.execute(text("DELETE FROM ledger_events WHERE seq = :s"), {"s": last})


def _tamper_delete_tail_and_head(session: Session) -> None:
    """Delete the newest event and rewind the head row: the signed checkpoint still names it."""
    last = session.execute(text("SELECT max(seq) FROM ledger_events")).scalar_one()
    prev = session.execute(text("SELECT hash FROM ledger_events WHERE seq = :s"), {"s": last - 1}).scalar_one()
    session.execute(text("DELETE FROM ledger_events WHERE seq = :s"), {"s": last})
    session.execute(text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": last - 1, "h": prev})


def _tamper_insert(session: Session) -> None:
    """Shift events 7.. up by one and insert a forged event at 7."""
    last = session.execute(text("SELECT max(seq) FROM ledger_events")).scalar_one()
    for seq in range(last, 6, -1):
        session.execute(text("UPDATE ledger_events SET seq = :n WHERE seq = :s"), {"n": seq + 1, "s": seq})
    prev = session.execute(text("SELECT hash FROM ledger_events WHERE seq = 6")).scalar_one()
    body = {
        "seq": 7,
        "ts": "2026-01-01T00:00:00+00:00",
        "actor": "x",
        "action": "grant.approve",
        "object_type": "grant",
        "object_id": "g",
        "details": {},
    }
    session.execute(
        text(
            "INSERT INTO ledger_events (seq, ts, actor, action, object_type, object_id, details, prev_hash, hash) "
            "VALUES (7, :ts, 'x', 'grant.approve', 'grant', 'g', '{}', :p, :h)"
        ),
        {"ts": body["ts"], "p": prev, "h": ledger_crypto.event_hash(prev, body)},
    )


def _tamper_reorder(session: Session) -> None:
    session.execute(text("UPDATE ledger_events SET seq = -1 WHERE seq = 8"))
    session.execute(text("UPDATE ledger_events SET seq = 8 WHERE seq = 9"))
    session.execute(text("UPDATE ledger_events SET seq = 9 WHERE seq = -1"))


def _tamper_checkpoint_signature(session: Session) -> None:
    session.execute(text("UPDATE ledger_checkpoints SET head_hash = :h WHERE seq = 2"), {"h": "f" * 64})


def _tamper_rewrite_and_resign(session: Session) -> None:
    _rewrite_and_resign(session, *ledger_crypto.generate_signing_key())


def _rewrite_and_resign(session: Session, private: bytes, public: bytes) -> None:
    """Rewrite the whole chain consistently and re-sign every checkpoint with another key (``private``).

    Every hash, every ``prev_hash``, the head row and every checkpoint's head agree with the forged
    chain; only the signatures betray it, as they were not made with the domain's key.
    """
    rows = session.execute(text("SELECT * FROM ledger_events ORDER BY seq")).mappings().all()
    prev = ledger_crypto.GENESIS_HASH
    for row in rows:
        action = "org.delete" if row["seq"] == 3 else row["action"]
        body = {
            "seq": row["seq"],
            "ts": row["ts"],
            "actor": row["actor"],
            "action": action,
            "object_type": row["object_type"],
            "object_id": row["object_id"],
            "details": json.loads(row["details"]),
        }
        forged = ledger_crypto.event_hash(prev, body)
        session.execute(
            text("UPDATE ledger_events SET action = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
            {"a": action, "p": prev, "h": forged, "s": row["seq"]},
        )
        session.execute(
            text("UPDATE ledger_checkpoints SET head_hash = :h, signature = :g, key_fingerprint = :f WHERE seq = :s"),
            {
                "h": forged,
                "g": ledger_crypto.sign(private, ledger_crypto.checkpoint_message(row["seq"], forged)),
                "f": ledger_crypto.fingerprint(public),
                "s": row["seq"],
            },
        )
        prev = forged
    session.execute(text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": rows[-1]["seq"], "h": prev})


TAMPERS: list[tuple[str, Callable[[Session], None], int | None]] = [
    ("edit-details", _tamper_edit, 3),
    ("edit-actor", _tamper_edit_actor, 4),
    ("edit-and-rehash", _tamper_rehash, 5),  # its signed checkpoint disagrees
    ("delete-middle", _tamper_delete_middle, 6),
    ("delete-tail", _tamper_delete_tail, None),
    ("delete-tail-and-rewind-head", _tamper_delete_tail_and_head, None),
    ("insert", _tamper_insert, 7),
    ("reorder", _tamper_reorder, 8),
    ("forge-checkpoint", _tamper_checkpoint_signature, 2),
    ("rewrite-chain-and-resign-with-another-key", _tamper_rewrite_and_resign, 1),
]


@pytest.mark.parametrize(("tamper", "first_bad"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_tampering_is_detected(history: World, app: Flask, tamper: Callable[[Session], None], first_bad: int | None) -> None:
    length = _verify(history)["length"]
    with get_db_of(app).sessions() as session:
        tamper(session)
        session.commit()
    report = _verify(history)
    assert report["ok"] is False
    assert report["problem"]
    assert report["first_bad_seq"] == (first_bad if first_bad is not None else length)
    runner = CliRunner()
    env = {"SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    result = runner.invoke(main, ["audit", "verify"], env=env)
    assert result.exit_code == 1
    assert json.loads(result.output)["first_bad_seq"] == report["first_bad_seq"]


def test_a_consistent_rewrite_signed_with_another_key_is_refused(history: World, app: Flask) -> None:
    """The forgery is perfect but for its signer: under the attacker's key it verifies, under the domain's it does not."""
    private, public = ledger_crypto.generate_signing_key()
    with get_db_of(app).sessions() as session:
        domain_public = bytes(session.execute(text("SELECT public_der FROM domain_keys")).scalar_one())
        _rewrite_and_resign(session, private, public)
        session.commit()
        assert verify(session, public).ok is True
        report = verify(session, domain_public)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 1, "checkpoint signature is not valid")


def test_cli_verify_exits_zero_when_intact(history: World, app: Flask) -> None:
    env = {"SANDBOX_INSTANCE_PATH": app.config["INSTANCE_PATH"], "SANDBOX_DATABASE_URL": app.config["DATABASE_URL"]}
    result = CliRunner().invoke(main, ["audit", "verify"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_checkpoints_are_signed_by_the_domain_key(history: World, app: Flask) -> None:
    with get_db_of(app).sessions() as session:
        public = session.execute(text("SELECT public_der FROM domain_keys")).scalar_one()
        rows = session.execute(text("SELECT seq, head_hash, signature FROM ledger_checkpoints")).all()
    assert rows
    for seq, head, signature in rows:
        assert ledger_crypto.verify(bytes(public), ledger_crypto.checkpoint_message(seq, head), bytes(signature))
    assert _verify(history)["public_key_fingerprint"] == ledger_crypto.fingerprint(bytes(public))


def test_failed_change_appends_nothing(world: World, pums: dict[str, Any]) -> None:
    before = _verify(world)["length"]
    response = world.upload(
        world.steward,
        {
            "name": "pums",
            "title": "again",
            "level": "一般",
            "privacy_unit": "pid",
            "columns": {"pid": {"role": "identifier", "type": "int"}},
        },
        data_file("smartnoise-sdk/PUMS_pid.csv"),
    )
    assert response.status_code == 400
    assert _verify(world)["length"] == before


def test_tampered_details_still_list(history: World, app: Flask) -> None:
    with get_db_of(app).sessions() as session:
        session.execute(text("UPDATE ledger_events SET details = 'not json' WHERE seq = 2"))
        session.commit()
    events = _events(history)
    assert events[1]["details"] == {"unreadable": True}
    assert _verify(history)["first_bad_seq"] == 2


def test_concurrent_appends_keep_one_chain(app: Flask) -> None:
    """Writers in parallel threads (separate connections) get consecutive sequence numbers."""
    from concurrent.futures import ThreadPoolExecutor

    db, ledger = get_db_of(app), app.extensions["sandbox.ledger"]

    def append(i: int) -> int:
        with db.writing() as session:
            return int(ledger.append(session, actor="test", action="test.append", object_type="test", object_id=str(i)).seq)

    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = sorted(pool.map(append, range(40)))
    assert len(set(seqs)) == 40
    assert seqs == list(range(seqs[0], seqs[0] + 40))
    with db.sessions() as session:
        public = session.execute(text("SELECT public_der FROM domain_keys")).scalar_one()
        assert verify(session, bytes(public)).ok


def test_the_signing_key_is_unwrapped_once_and_again_after_a_rotation(world: World, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event is still signed; the key is unwrapped at the first checkpoint and when its wrapping changes."""
    unwrapped: list[str] = []
    real = sandbox.service.ledger.unwrap_signing_key

    def counting(key: keys.WrappedSigningKey, store: KeyStore) -> bytes:
        unwrapped.append(key.master_key_id)
        return real(key, store)

    monkeypatch.setattr(sandbox.service.ledger, "unwrap_signing_key", counting)
    app.extensions["sandbox.ledger"] = Ledger(keys.get_keys_of(app), 1)  # a fresh process's ledger, nothing unwrapped yet
    before = _verify(world)["checkpoints"]
    for name in ("Org A", "Org B", "Org C"):
        make_org(world.client, world.admin, name, "enterprise")
    assert len(unwrapped) == 1
    with get_db_of(app).writing() as session:
        rotated = keys.rotate(session, keys.get_keys_of(app))
    keys.retire_old_keys(keys.get_keys_of(app))
    make_org(world.client, world.admin, "Org D", "enterprise")
    assert unwrapped[1:] == [rotated["master_key_id"]]
    report = _verify(world)
    assert report["ok"] is True
    assert report["checkpoints"] == before + 4  # one per event (LEDGER_CHECKPOINT_EVERY = 1)
