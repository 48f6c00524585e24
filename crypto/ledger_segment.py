"""Offline verification of an exported segment of the audit ledger: its events and signed checkpoints.

An export (the console's ledger download, ``python -m sandbox audit verify-export`` checks it) holds
consecutive events ``first..last`` as the API's ``GET /audit/events`` gives them, and the signed
checkpoints of that range. Without the database, a segment is genuine when

* its events are consecutive, each ``prev_hash`` is the hash of the event before it (the first
  one's is the hash of the event before the segment, which an earlier segment's last event shows),
  and each ``hash`` is the hash of its content;
* every checkpoint in the range names the hash of its event and is signed by the domain's key
  (whose fingerprint the verifier compares with one obtained elsewhere: an export carries its key,
  and whoever forged the events could have put in their own);
* a signed checkpoint covers the segment's last event: events after the last checkpoint are chained
  but not signed, and could have been appended by anyone who can write the database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import InternalError
from crypto import ledger

BODY_FIELDS = ("seq", "ts", "actor", "action", "object_type", "object_id", "details")


@dataclass(frozen=True)
class SegmentReport:
    """What a segment's verification found: ``ok`` only if every event is chained and the last one is signed."""

    ok: bool
    first: int | None
    last: int | None
    events: int
    checkpoints: int
    signed_up_to: int | None  # the last event a valid checkpoint covers
    first_bad_seq: int | None
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "first": self.first,
            "last": self.last,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "signed_up_to": self.signed_up_to,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        }


def verify_segment(events: Sequence[Mapping[str, Any]], checkpoints: Sequence[Mapping[str, Any]], public_der: bytes) -> SegmentReport:
    """Check a segment's chain and its checkpoints' signatures under ``public_der``; never raises on bad content."""
    first = _int(events[0].get("seq")) if events else None
    last = _int(events[-1].get("seq")) if events else None
    hashes: dict[int, str] = {}
    bad = _chain_problem(events, hashes)
    signed: int | None = None
    for checkpoint in sorted(checkpoints, key=lambda c: _int(c.get("seq")) or 0):
        seq = _int(checkpoint.get("seq")) or 0
        if bad is not None and seq >= bad[0]:
            break  # the chain is broken before this checkpoint: its problem is the first
        problem = _checkpoint_problem(checkpoint, hashes, public_der)
        if problem is not None:
            bad = problem
            break
        signed = seq
    if bad is None and (not events or signed != last):
        at = last if last is not None else 0
        bad = (at, "no signed checkpoint covers the segment's last event")
    count, found = len(events), len(checkpoints)
    if bad is None:
        return SegmentReport(True, first, last, count, found, signed, None, None)
    return SegmentReport(False, first, last, count, found, signed, bad[0], bad[1])


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chain_problem(events: Sequence[Mapping[str, Any]], hashes: dict[int, str]) -> tuple[int, str] | None:
    """The first event that breaks the chain, as (seq, problem); ``hashes`` gets the intact events' hashes."""
    expected, prev = None, None
    for event in events:
        seq = _int(event.get("seq"))
        if seq is None or (expected is not None and seq != expected):
            return (expected or 0, "the events are not consecutive")
        prev_hash, claimed = event.get("prev_hash"), event.get("hash")
        if prev is not None and prev_hash != prev:
            return (seq, "previous hash does not match the preceding event")
        if not isinstance(event.get("details"), dict) or any(name not in event for name in BODY_FIELDS):
            return (seq, "the event is incomplete")
        try:
            computed = ledger.event_hash(str(prev_hash), {name: event[name] for name in BODY_FIELDS})
        except InternalError:
            return (seq, "the event is not canonical JSON or its previous hash is malformed")
        if computed != claimed:
            return (seq, "event hash does not match its content")
        hashes[seq] = computed
        expected, prev = seq + 1, computed
    return None


def _checkpoint_problem(checkpoint: Mapping[str, Any], hashes: dict[int, str], public_der: bytes) -> tuple[int, str] | None:
    seq, head = _int(checkpoint.get("seq")), checkpoint.get("head_hash")
    if seq is None or seq not in hashes:
        return (seq or 0, "a checkpoint names an event outside the intact segment")
    if head != hashes[seq]:
        return (seq, "a signed checkpoint disagrees with the chain")
    try:
        signature = base64.b64decode(str(checkpoint.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        return (seq, "checkpoint signature is not valid")
    if not ledger.verify(public_der, ledger.checkpoint_message(seq, head), signature):
        return (seq, "checkpoint signature is not valid")
    return None
