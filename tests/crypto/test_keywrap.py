"""Tests of crypto.keywrap: round trips and rejection of every mismatch or tampering."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError, InternalError
from crypto import keywrap, ledger

MASTER = bytes(range(100, 132))
OTHER_MASTER = bytes(range(101, 133))
MASTER_ID = "mk-0123456789abcdef"
CONTEXT = "dataset-version:7f1c2d3e-0000-4000-8000-000000000001"
SETTINGS = settings(max_examples=40, deadline=None, database=None)


def wrapped_data_key() -> tuple[bytes, bytes]:
    key = keywrap.generate_key()
    return key, keywrap.wrap(MASTER, MASTER_ID, key, context=CONTEXT)


def test_generate_key_is_32_fresh_random_bytes() -> None:
    first, second = keywrap.generate_key(), keywrap.generate_key()
    assert len(first) == len(second) == keywrap.KEY_BYTES == 32
    assert first != second


def test_new_key_id_format_and_freshness() -> None:
    first, second = keywrap.new_key_id(), keywrap.new_key_id()
    assert re.fullmatch(r"mk-[0-9a-f]{16}", first)
    assert first != second


def test_round_trip_and_format_of_a_data_key() -> None:
    key, wrapped = wrapped_data_key()
    assert len(wrapped) == 1 + 12 + 32 + 16
    assert wrapped[0] == 1
    assert key not in wrapped
    assert keywrap.unwrap(MASTER, MASTER_ID, wrapped, context=CONTEXT) == key


def test_wrapping_twice_gives_different_blobs() -> None:
    key = keywrap.generate_key()
    first = keywrap.wrap(MASTER, MASTER_ID, key, context=CONTEXT)
    second = keywrap.wrap(MASTER, MASTER_ID, key, context=CONTEXT)
    assert first[1:13] != second[1:13]
    assert first != second


@SETTINGS
@given(
    secret=st.binary(min_size=16, max_size=1024),
    master_key_id=st.text(min_size=1, max_size=30),
    context=st.text(min_size=1, max_size=60),
)
def test_round_trip_any_secret_id_and_context(secret: bytes, master_key_id: str, context: str) -> None:
    wrapped = keywrap.wrap(MASTER, master_key_id, secret, context=context)
    assert len(wrapped) == 1 + 12 + len(secret) + 16
    assert keywrap.unwrap(MASTER, master_key_id, wrapped, context=context) == secret


def test_round_trip_of_a_pkcs8_signing_key() -> None:
    private_der, _ = ledger.generate_signing_key()
    context = "domain-key:ledger_signing"
    wrapped = keywrap.wrap(MASTER, MASTER_ID, private_der, context=context)
    assert keywrap.unwrap(MASTER, MASTER_ID, wrapped, context=context) == private_der


def assert_rejected(wrapped: bytes, *, master: bytes = MASTER, master_id: str = MASTER_ID, context: str = CONTEXT) -> None:
    with pytest.raises(IntegrityError):
        keywrap.unwrap(master, master_id, wrapped, context=context)


def test_other_context_is_rejected() -> None:
    _, wrapped = wrapped_data_key()
    assert_rejected(wrapped, context="dataset-version:7f1c2d3e-0000-4000-8000-000000000002")


def test_other_master_key_id_is_rejected() -> None:
    _, wrapped = wrapped_data_key()
    assert_rejected(wrapped, master_id="mk-fedcba9876543210")


def test_other_master_key_is_rejected() -> None:
    _, wrapped = wrapped_data_key()
    assert_rejected(wrapped, master=OTHER_MASTER)


def test_fields_are_length_prefixed_so_shifted_boundaries_do_not_collide() -> None:
    key = keywrap.generate_key()
    wrapped = keywrap.wrap(MASTER, "mk-a", key, context="bc")
    assert_rejected(wrapped, master_id="mk-ab", context="c")
    assert_rejected(wrapped, master_id="mk-", context="abc")


def position_class(pos: int) -> str:
    if pos == 0:
        return "version"
    if pos < 13:
        return "nonce"
    return "ciphertext" if pos < 45 else "tag"


@pytest.mark.parametrize("pos", [pytest.param(pos, id=f"{position_class(pos)}-{pos}") for pos in range(61)])
def test_flipping_any_byte_is_rejected(pos: int) -> None:
    _, wrapped = wrapped_data_key()
    tampered = bytearray(wrapped)
    tampered[pos] ^= 1 << (pos % 8)
    assert_rejected(bytes(tampered))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda w: w[:-1], id="truncated-by-one"),
        pytest.param(lambda w: w[:-16], id="tag-removed"),
        pytest.param(lambda w: w + b"\x00", id="extended-by-one"),
        pytest.param(lambda w: b"", id="empty"),
        pytest.param(lambda w: w[:29], id="shorter-than-minimum"),
        pytest.param(lambda w: w + bytes(1024), id="longer-than-maximum"),
    ],
)
def test_wrong_length_is_rejected(mangle: Callable[[bytes], bytes]) -> None:
    _, wrapped = wrapped_data_key()
    assert_rejected(mangle(wrapped))


@pytest.mark.parametrize("master", [b"", bytes(16), bytes(33)], ids=lambda k: f"{len(k)}B")
def test_master_key_of_wrong_length_is_a_programming_error(master: bytes) -> None:
    with pytest.raises(InternalError):
        keywrap.wrap(master, MASTER_ID, keywrap.generate_key(), context=CONTEXT)
    _, wrapped = wrapped_data_key()
    with pytest.raises(InternalError):
        keywrap.unwrap(master, MASTER_ID, wrapped, context=CONTEXT)


@pytest.mark.parametrize("secret", [b"", bytes(15), bytes(1025)], ids=lambda k: f"{len(k)}B")
def test_secret_of_unsupported_length_is_a_programming_error(secret: bytes) -> None:
    with pytest.raises(InternalError):
        keywrap.wrap(MASTER, MASTER_ID, secret, context=CONTEXT)


@pytest.mark.parametrize(("master_id", "context"), [("", CONTEXT), (MASTER_ID, "")])
def test_empty_master_key_id_or_context_is_a_programming_error(master_id: str, context: str) -> None:
    with pytest.raises(InternalError):
        keywrap.wrap(MASTER, master_id, keywrap.generate_key(), context=context)
