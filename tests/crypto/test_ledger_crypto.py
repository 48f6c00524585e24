"""Tests of crypto.ledger: canonical JSON, event hashes, checkpoint messages, Ed25519 signatures."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pytest
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InternalError
from crypto import ledger

SETTINGS = settings(max_examples=50, deadline=None, database=None)
HASH_A = "a" * 64

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)

BODY: dict[str, object] = {
    "seq": 7,
    "ts": "2025-01-01T00:00:00.000000+00:00",
    "actor": "user:alice",
    "action": "dataset.upload",
    "object_type": "dataset",
    "object_id": "d-1",
    "details": {"rows": 10, "sha256": "ab" * 32},
}


def reversed_keys(value: Any) -> Any:
    """The same JSON value with every object's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_exact_bytes() -> None:
    value = {"b": 1, "a": [1, "\u00e9", None, True, 1.5]}
    assert ledger.canonical(value) == '{"a":[1,"\u00e9",null,true,1.5],"b":1}'.encode()


@SETTINGS
@given(value=json_values)
def test_canonical_is_independent_of_key_order(value: object) -> None:
    assert ledger.canonical(reversed_keys(value)) == ledger.canonical(value)


@SETTINGS
@given(value=json_values)
def test_canonical_survives_a_json_round_trip(value: object) -> None:
    encoded = ledger.canonical(value)
    assert ledger.canonical(json.loads(encoded)) == encoded


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param({"x": math.inf}, id="infinity"),
        pytest.param({1, 2}, id="set"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({"x": object()}, id="object"),
        pytest.param({1: "a", "b": 2}, id="mixed-keys"),
        pytest.param("\ud800", id="lone-surrogate"),
    ],
)
def test_canonical_rejects_non_json(value: object) -> None:
    with pytest.raises(InternalError):
        ledger.canonical(value)


def test_canonical_rejects_circular_structures() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InternalError):
        ledger.canonical(loop)


# --- event hashes and checkpoint messages ----------------------------------------------------


def test_event_hash_matches_an_independent_computation() -> None:
    expected = hashlib.sha256(b'{"body":{"a":1},"prev_hash":"' + b"0" * 64 + b'"}').hexdigest()
    assert ledger.event_hash(ledger.GENESIS_HASH, {"a": 1}) == expected
    assert ledger.GENESIS_HASH == "0" * 64


def test_event_hash_is_independent_of_body_key_order() -> None:
    assert ledger.event_hash(HASH_A, reversed_keys(BODY)) == ledger.event_hash(HASH_A, BODY)


def mutations() -> list[Any]:
    cases = []
    for field, value in BODY.items():
        changed: object = {}
        if isinstance(value, int):
            changed = value + 1
        elif isinstance(value, str):
            changed = value + "x"
        cases.append(pytest.param(HASH_A, {**BODY, field: changed}, id=f"change-{field}"))
        cases.append(pytest.param(HASH_A, {k: v for k, v in BODY.items() if k != field}, id=f"drop-{field}"))
    cases.append(pytest.param(HASH_A, {**BODY, "extra": None}, id="add-field"))
    cases.append(pytest.param(HASH_A, {**BODY, "details": {"rows": 11}}, id="change-nested"))
    cases.append(pytest.param("b" + HASH_A[1:], BODY, id="change-prev-hash"))
    cases.append(pytest.param(HASH_A, {**BODY, "seq": "7"}, id="int-becomes-string"))
    return cases


@pytest.mark.parametrize(("prev_hash", "body"), mutations())
def test_event_hash_changes_when_anything_changes(prev_hash: str, body: dict[str, object]) -> None:
    original = ledger.event_hash(HASH_A, BODY)
    assert re.fullmatch(r"[0-9a-f]{64}", original)
    assert ledger.event_hash(prev_hash, body) != original


@pytest.mark.parametrize("prev_hash", ["", "0" * 63, "A" * 64, "g" * 64, "0" * 65])
def test_event_hash_rejects_malformed_prev_hash(prev_hash: str) -> None:
    with pytest.raises(InternalError):
        ledger.event_hash(prev_hash, BODY)


def test_checkpoint_message_exact_bytes() -> None:
    expected = '{"head":"' + HASH_A + '","kind":"sandbox-ledger-checkpoint-v1","seq":5}'
    assert ledger.checkpoint_message(5, HASH_A) == expected.encode()
    assert ledger.checkpoint_message(6, HASH_A) != ledger.checkpoint_message(5, HASH_A)


@pytest.mark.parametrize(("seq", "head"), [(-1, HASH_A), (True, HASH_A), (1, "short")])
def test_checkpoint_message_rejects_bad_input(seq: int, head: str) -> None:
    with pytest.raises(InternalError):
        ledger.checkpoint_message(seq, head)


# --- signatures ------------------------------------------------------------------------------

# RFC 8032 section 7.1, TEST 1 and TEST 2: (secret seed, public key, message, signature).
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS, ids=["test1", "test2"])
def test_sign_and_verify_match_rfc8032(seed: str, public: str, message: str, signature: str) -> None:
    key = eddsa.import_private_key(bytes.fromhex(seed))
    private_der = key.export_key(format="DER")
    public_der = key.public_key().export_key(format="DER")
    assert key.public_key().export_key(format="raw") == bytes.fromhex(public)
    assert ledger.sign(private_der, bytes.fromhex(message)) == bytes.fromhex(signature)
    assert ledger.verify(public_der, bytes.fromhex(message), bytes.fromhex(signature))


def test_generate_signing_key_formats() -> None:
    private_der, public_der = ledger.generate_signing_key()
    assert len(public_der) == 44
    assert public_der.startswith(bytes.fromhex("302a300506032b6570032100"))  # Ed25519 SPKI
    private = ECC.import_key(private_der)
    assert private.curve == "Ed25519"
    assert private.has_private()
    assert private.public_key().export_key(format="DER") == public_der
    assert ledger.generate_signing_key()[1] != public_der


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    return ledger.generate_signing_key()


@SETTINGS
@given(message=st.binary(max_size=200))
def test_sign_verify_round_trip(keypair: tuple[bytes, bytes], message: bytes) -> None:
    private_der, public_der = keypair
    signature = ledger.sign(private_der, message)
    assert len(signature) == 64
    assert ledger.verify(public_der, message, signature)


def test_verify_rejects_altered_message_signature_or_key(keypair: tuple[bytes, bytes]) -> None:
    private_der, public_der = keypair
    message = ledger.checkpoint_message(10, HASH_A)
    signature = ledger.sign(private_der, message)
    assert ledger.verify(public_der, message, signature)
    assert not ledger.verify(public_der, ledger.checkpoint_message(11, HASH_A), signature)
    assert not ledger.verify(public_der, message + b" ", signature)
    _, other_public = ledger.generate_signing_key()
    assert not ledger.verify(other_public, message, signature)


@pytest.mark.parametrize("pos", [0, 31, 32, 63], ids=["R-first", "R-last", "S-first", "S-last"])
def test_verify_rejects_any_flipped_signature_byte(keypair: tuple[bytes, bytes], pos: int) -> None:
    private_der, public_der = keypair
    signature = bytearray(ledger.sign(private_der, b"message"))
    signature[pos] ^= 0x01
    assert not ledger.verify(public_der, b"message", bytes(signature))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s + b"\x00", id="extended"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: bytes(64), id="zeros"),
    ],
)
def test_verify_rejects_malformed_signature(keypair: tuple[bytes, bytes], mangle: Any) -> None:
    private_der, public_der = keypair
    assert not ledger.verify(public_der, b"message", mangle(ledger.sign(private_der, b"message")))


def test_verify_rejects_keys_that_are_not_canonical_ed25519_public_der(
    keypair: tuple[bytes, bytes],
) -> None:
    private_der, public_der = keypair
    signature = ledger.sign(private_der, b"message")
    pem = ECC.import_key(public_der).export_key(format="PEM").encode()
    raw = ECC.import_key(public_der).export_key(format="raw")
    p256 = ECC.generate(curve="p256").public_key().export_key(format="DER")
    for candidate in (private_der, pem, raw, p256, b"", bytes(44), public_der[:-1]):
        assert not ledger.verify(candidate, b"message", signature)


@SETTINGS
@given(public_der=st.binary(max_size=60), signature=st.binary(max_size=70))
def test_verify_never_raises_on_garbage(public_der: bytes, signature: bytes) -> None:
    assert ledger.verify(public_der, b"message", signature) is False


@pytest.mark.parametrize("bad", [b"", b"not a key", bytes(48)], ids=["empty", "text", "zeros"])
def test_sign_with_invalid_private_key_is_a_programming_error(bad: bytes) -> None:
    with pytest.raises(InternalError):
        ledger.sign(bad, b"message")


def test_sign_with_a_public_or_non_ed25519_key_is_a_programming_error(
    keypair: tuple[bytes, bytes],
) -> None:
    p256 = ECC.generate(curve="p256").export_key(format="DER")
    for bad in (keypair[1], p256):
        with pytest.raises(InternalError):
            ledger.sign(bad, b"message")


def test_fingerprint(keypair: tuple[bytes, bytes]) -> None:
    _, public_der = keypair
    fingerprint = ledger.fingerprint(public_der)
    assert fingerprint == hashlib.sha256(public_der).hexdigest()[:16]
    assert ledger.fingerprint(ledger.generate_signing_key()[1]) != fingerprint
