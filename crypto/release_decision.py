"""Release decisions of ``he`` jobs: what the domain signs so that the key custodian decrypts a cell.

A decision names the job, the Paillier key (fingerprint), when it was issued, and one entry per
ciphertext that passed output control: ``{"row", "column", "sha256"}``, the digest being
``crypto.paillier.digest`` of the ciphertext's fixed-length bytes. The domain signs it with its
Ed25519 key (the ledger signing key); the custodian verifies the signature with the exported public
key and decrypts only ciphertexts whose digest the decision names.

Threats answered:

* The signed message is canonical JSON under a ``kind`` label of its own, so a ledger checkpoint
  signature (another ``kind``) can never pass for a decision, nor a decision for a checkpoint.
* Digests bind each decision entry to one ciphertext: a suppressed cell's ciphertext, or any other
  one, is not named, so the custodian refuses it.
* ``issued_at`` lets the custodian refuse old decisions: a leaked decision is of use only briefly,
  and only for the ciphertexts it names (which were cleared for release anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.errors import InternalError
from crypto import ledger as ledger_crypto
from crypto import paillier
from crypto.paillier import PublicKey

KIND = "sandbox-he-release-decision-v1"
MAX_CELLS = 1_000_000


def cell(row: int, column: str, ciphertext: bytes) -> dict[str, Any]:
    """One decision entry for a serialised ciphertext (``paillier.to_bytes``)."""
    return {"row": row, "column": column, "sha256": paillier.digest([ciphertext])}


def decision(job_id: str, key: PublicKey, cells: Sequence[Mapping[str, Any]], issued_at: datetime | None = None) -> dict[str, Any]:
    when = (issued_at or datetime.now(UTC)).astimezone(UTC).isoformat()
    return {"job_id": job_id, "key": key.fingerprint, "cells": [dict(c) for c in cells], "issued_at": when}


def message(body: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: canonical JSON of the decision under this module's kind label."""
    return ledger_crypto.canonical({"kind": KIND, "decision": dict(body)})


def decision_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the signed message: how the ledger and the custodian's log name a decision."""
    return hashlib.sha256(message(body)).hexdigest()


def sign(private_der: bytes, body: Mapping[str, Any]) -> str:
    """The Ed25519 signature of the decision, base64."""
    return base64.b64encode(ledger_crypto.sign(private_der, message(body))).decode()


def verify(public_der: bytes, body: Mapping[str, Any], signature: str) -> bool:
    """True only for a valid signature; never raises for bad input (malformed base64, non-JSON values)."""
    try:
        raw = base64.b64decode(signature, validate=True)
        signed = message(body)
    except (binascii.Error, ValueError, InternalError):
        return False
    return ledger_crypto.verify(public_der, signed, raw)


def issued_at(body: Mapping[str, Any]) -> datetime | None:
    """The decision's issue time (aware, UTC), or None when it is missing or malformed."""
    value = body.get("issued_at")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else None
