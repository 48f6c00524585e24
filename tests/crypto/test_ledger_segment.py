"""Offline verification of a ledger segment, without the sandbox: a chain built with ``crypto.ledger`` and checked piece by piece."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from crypto import ledger
from crypto.ledger_segment import verify_segment


def chain(length: int, private: bytes, start_prev: str = ledger.GENESIS_HASH) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``length`` events as ``GET /audit/events`` shows them, each with a signed checkpoint."""
    events, checkpoints, prev = [], [], start_prev
    for seq in range(1, length + 1):
        body = {"seq": seq, "ts": f"2026-12-08T00:00:{seq:02d}.000000+00:00", "actor": "a", "action": "x.y", "object_type": "t"}
        body |= {"object_id": f"o{seq}", "details": {"n": seq, "名": "值"}}
        digest = ledger.event_hash(prev, body)
        events.append(body | {"prev_hash": prev, "hash": digest})
        signature = ledger.sign(private, ledger.checkpoint_message(seq, digest))
        checkpoints.append({"seq": seq, "head_hash": digest, "signature": base64.b64encode(signature).decode()})
        prev = digest
    return events, checkpoints


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return ledger.generate_signing_key()


def test_an_intact_segment_verifies(keys: tuple[bytes, bytes]) -> None:
    events, checkpoints = chain(6, keys[0])
    report = verify_segment(events[2:], checkpoints[2:], keys[1])  # a segment from the middle: its first prev_hash is given
    assert report.as_dict() == {
        "ok": True, "first": 3, "last": 6, "events": 4, "checkpoints": 4, "signed_up_to": 6, "first_bad_seq": None, "problem": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("details", {"n": 99}, "event hash does not match its content"),
        ("seq", 9, "the events are not consecutive"),
        ("prev_hash", "f" * 64, "previous hash does not match the preceding event"),
        ("prev_hash", "not hex", "previous hash does not match the preceding event"),
        ("hash", "0" * 64, "event hash does not match its content"),
    ],
)
def test_a_changed_event_is_found(keys: tuple[bytes, bytes], field: str, value: Any, problem: str) -> None:
    events, checkpoints = chain(5, keys[0])
    events[2][field] = value
    report = verify_segment(events, checkpoints, keys[1])
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 3, problem)


def test_a_malformed_first_prev_hash_is_refused_not_raised(keys: tuple[bytes, bytes]) -> None:
    events, checkpoints = chain(3, keys[0])
    events[0]["prev_hash"] = "not hex"
    report = verify_segment(events, checkpoints, keys[1])
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert report.problem == "the event is not canonical JSON or its previous hash is malformed"


def test_a_checkpoint_signed_by_another_key_or_garbled_fails(keys: tuple[bytes, bytes]) -> None:
    events, checkpoints = chain(4, keys[0])
    other, _ = ledger.generate_signing_key()
    _, forged = chain(4, other)
    assert verify_segment(events, forged, keys[1]).problem == "checkpoint signature is not valid"
    checkpoints[1]["signature"] = "***"
    report = verify_segment(events, checkpoints, keys[1])
    assert (report.first_bad_seq, report.problem, report.signed_up_to) == (2, "checkpoint signature is not valid", 1)


def test_events_after_the_last_checkpoint_are_not_signed(keys: tuple[bytes, bytes]) -> None:
    events, checkpoints = chain(4, keys[0])
    report = verify_segment(events, checkpoints[:2], keys[1])
    assert (report.ok, report.signed_up_to, report.first_bad_seq) == (False, 2, 4)
    assert report.problem == "no signed checkpoint covers the segment's last event"
    assert not verify_segment([], [], keys[1]).ok  # an empty segment proves nothing
