"""Hashing and Ed25519 signing for the audit ledger: canonical JSON, hash-chained events and
signed checkpoints of the chain head.

Threats answered:

* Canonical JSON (sorted keys, no whitespace, UTF-8, no NaN or infinities) gives one byte string
  per JSON value, so a hash recomputed from the stored JSON matches the one computed at append time
  regardless of key order, and ambiguous values (NaN, non-JSON objects) are refused up front.
* Each event hash covers the previous event's hash, so editing, deleting, inserting or reordering
  any past event changes every later hash.
* An attacker who can write the database can recompute a whole chain; a checkpoint signed with an
  Ed25519 key kept outside the database pins the head, so a rewritten chain no longer matches it.
  Checkpoint messages carry a ``kind`` label so a signature over one cannot be replayed as another
  kind of signed object.

Key formats: private keys are PKCS#8 DER; public keys are DER SubjectPublicKeyInfo (RFC 8410,
44 bytes for Ed25519). Misuse by the caller raises ``core.errors.InternalError``; :func:`verify`
never raises for a bad signature or key, it answers False.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from core.errors import InternalError

__all__ = [
    "GENESIS_HASH",
    "Signer",
    "canonical",
    "checkpoint_message",
    "event_hash",
    "fingerprint",
    "generate_signing_key",
    "public_from_pem",
    "public_to_pem",
    "sign",
    "verify",
]

GENESIS_HASH = "0" * 64
_CHECKPOINT_KIND = "sandbox-ledger-checkpoint-v1"
_FINGERPRINT_CHARS = 16
_HEX_DIGITS = frozenset("0123456789abcdef")
_CURVE = "Ed25519"
_PUBLIC_DER_BYTES = 44  # SubjectPublicKeyInfo of an Ed25519 key is always 44 bytes
_EDDSA_MODE = "rfc8032"  # pure Ed25519, as in RFC 8032 section 5.1


def canonical(obj: object) -> bytes:
    """Return the canonical JSON encoding of ``obj`` as UTF-8 bytes.

    Keys are sorted, separators carry no whitespace, non-ASCII characters are kept as UTF-8, and
    NaN or infinities are refused. Objects outside JSON (sets, bytes, datetimes, ...), mixed-type
    keys, circular references and lone surrogates raise InternalError: callers must convert values
    to JSON types themselves. As in ``json``, tuples encode as arrays and int, float, bool or None
    keys as strings, so the result equals that of the object after a JSON round trip.
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InternalError(f"value is not canonical JSON: {type(exc).__name__}") from exc


def _check_hash(value: str, what: str) -> None:
    if not isinstance(value, str) or len(value) != 64 or not _HEX_DIGITS.issuperset(value):
        raise InternalError(f"{what} must be 64 lowercase hex characters")


def event_hash(prev_hash: str, body: Mapping[str, object]) -> str:
    """Return the hex SHA-256 of ``canonical({"prev_hash": prev_hash, "body": body})``.

    ``prev_hash`` is the previous event's hash, or :data:`GENESIS_HASH` for the first event.
    """
    _check_hash(prev_hash, "prev_hash")
    message = canonical({"prev_hash": prev_hash, "body": dict(body)})
    return SHA256.new(message).hexdigest()


def checkpoint_message(seq: int, head_hash: str) -> bytes:
    """Return the bytes signed for a checkpoint: the chain head ``head_hash`` at event ``seq``."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InternalError("checkpoint seq must be a non-negative integer")
    _check_hash(head_hash, "head_hash")
    return canonical({"kind": _CHECKPOINT_KIND, "seq": seq, "head": head_hash})


def generate_signing_key() -> tuple[bytes, bytes]:
    """Return a fresh Ed25519 key pair as (PKCS#8 DER private key, DER SubjectPublicKeyInfo).

    The private key is unencrypted: store it only in the secret store, never in the database.
    """
    key = ECC.generate(curve="ed25519")
    private_der = key.export_key(format="DER")
    public_der = key.public_key().export_key(format="DER")
    return private_der, public_der


def sign(private_der: bytes, message: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature (RFC 8032, pure, no context) of ``message``.

    Raises InternalError if ``private_der`` is not an unencrypted PKCS#8 Ed25519 private key.
    """
    return Signer(private_der).sign(message)


class Signer:
    """An Ed25519 private key imported once, to sign many messages as :func:`sign` does.

    Held in memory only: it is never written anywhere. Raises InternalError if ``private_der`` is
    not an unencrypted PKCS#8 Ed25519 private key.
    """

    def __init__(self, private_der: bytes) -> None:
        try:
            key = ECC.import_key(private_der)
        except ValueError as exc:
            raise InternalError("signing key is not a PKCS#8 DER Ed25519 private key") from exc
        if key.curve != _CURVE or not key.has_private():
            raise InternalError("signing key is not a PKCS#8 DER Ed25519 private key")
        self._key = key

    def sign(self, message: bytes) -> bytes:
        signature: bytes = eddsa.new(self._key, _EDDSA_MODE).sign(message)
        return signature


def _load_public(public_der: bytes) -> ECC.EccKey | None:
    """The Ed25519 public key in canonical DER ``public_der``, or None if it is anything else."""
    if len(public_der) != _PUBLIC_DER_BYTES:
        return None
    try:
        key = ECC.import_key(public_der)
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if key.curve != _CURVE or key.has_private():
        return None
    # Refuse non-canonical encodings, so that one key has exactly one accepted form and one
    # fingerprint.
    if key.export_key(format="DER") != public_der:
        return None
    return key


def verify(public_der: bytes, message: bytes, signature: bytes) -> bool:
    """Return True only if ``signature`` is a valid Ed25519 signature of ``message``.

    Answers False, never raises, for a wrong, malformed or truncated signature and for a
    ``public_der`` that is not a canonical DER SubjectPublicKeyInfo Ed25519 public key.
    """
    key = _load_public(public_der)
    if key is None:
        return False
    try:
        eddsa.new(key, _EDDSA_MODE).verify(message, signature)
    except (ValueError, TypeError):
        return False
    return True


def fingerprint(public_der: bytes) -> str:
    """Return the first 16 hex characters of the SHA-256 of ``public_der``, as given.

    A short, stable label for logs and checkpoint records; it identifies a key among a few, it is
    not a security boundary (64 bits).
    """
    return SHA256.new(public_der).hexdigest()[:_FINGERPRINT_CHARS]


def public_to_pem(public_der: bytes) -> str:
    """The public key as PEM text (``-----BEGIN PUBLIC KEY-----``): how it is handed to other parties."""
    key = _load_public(public_der)
    if key is None:
        raise InternalError("not a DER SubjectPublicKeyInfo Ed25519 public key")
    pem: str = key.export_key(format="PEM")
    return pem + "\n"


def public_from_pem(text: str) -> bytes | None:
    """The canonical DER of an Ed25519 public key given as PEM text, or None if it is anything else."""
    try:
        key = ECC.import_key(text.strip())
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if key.curve != _CURVE or key.has_private():
        return None
    der: bytes = key.export_key(format="DER")
    return der
