"""Tests of crypto.envelope: round trips, the exact format, and rejection of every tampering."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import IntegrityError, InternalError
from crypto import envelope

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEY_ID = "ds-key-1"
TAG = 16
SETTINGS = settings(max_examples=60, deadline=None, database=None)

# A small three-chunk envelope: chunks of 4, 4 and 2 plaintext bytes.
SMALL_PLAIN = b"0123456789"
SMALL_CHUNK = 4
HEADER_LEN = 4 + 1 + 4 + 2 + len(KEY_ID.encode()) + 8
STRIDE = SMALL_CHUNK + TAG
CHUNK_STARTS = [HEADER_LEN, HEADER_LEN + STRIDE, HEADER_LEN + 2 * STRIDE]
SMALL_LEN = HEADER_LEN + 2 * STRIDE + (2 + TAG)


def small_blob() -> bytes:
    return envelope.encrypt(KEY, SMALL_PLAIN, key_id=KEY_ID, chunk_size=SMALL_CHUNK)


def chunks(blob: bytes) -> list[bytes]:
    body = blob[HEADER_LEN:]
    return [body[i : i + STRIDE] for i in range(0, len(body), STRIDE)]


def reason_of(blob: bytes | bytearray, *, key: bytes = KEY, key_id: str = KEY_ID) -> str:
    """Decrypt ``blob`` expecting failure; return the IntegrityError's reason code."""
    with pytest.raises(IntegrityError) as info:
        envelope.decrypt(key, bytes(blob), key_id=key_id)
    reason = info.value.details["reason"]
    assert isinstance(reason, str)
    return reason


def position_class(pos: int) -> str:
    named = [(4, "magic"), (5, "version"), (9, "chunk-size"), (11, "key-id-len")]
    named += [(HEADER_LEN - 8, "key-id"), (HEADER_LEN, "nonce-prefix")]
    for end, name in named:
        if pos < end:
            return f"header-{name}"
    index, offset = divmod(pos - HEADER_LEN, STRIDE)
    chunk = {0: "first-chunk", 1: "middle-chunk", 2: "last-chunk"}[index]
    tag_start = SMALL_CHUNK if index < 2 else 2
    return f"{chunk}-{'tag' if offset >= tag_start else 'ciphertext'}"


# --- round trips -----------------------------------------------------------------------------


@SETTINGS
@given(plaintext=st.binary(max_size=300), chunk_size=st.integers(min_value=1, max_value=64))
def test_round_trip_any_plaintext_and_small_chunk_size(plaintext: bytes, chunk_size: int) -> None:
    blob = envelope.encrypt(KEY, plaintext, key_id=KEY_ID, chunk_size=chunk_size)
    n_chunks = max(1, -(-len(plaintext) // chunk_size))
    assert len(blob) == HEADER_LEN + len(plaintext) + TAG * n_chunks
    assert envelope.decrypt(KEY, blob, key_id=KEY_ID) == plaintext
    assert envelope.read_key_id(blob) == KEY_ID


@SETTINGS
@given(plaintext=st.binary(max_size=200), key_id=st.text(min_size=1, max_size=20))
def test_round_trip_bytearray_memoryview_and_unicode_key_id(plaintext: bytes, key_id: str) -> None:
    for source in (bytearray(plaintext), memoryview(plaintext)):
        blob = envelope.encrypt(KEY, source, key_id=key_id, chunk_size=7)
        assert envelope.decrypt(KEY, memoryview(blob), key_id=key_id) == plaintext
        assert envelope.read_key_id(memoryview(blob)) == key_id


def test_empty_plaintext_is_one_empty_final_chunk() -> None:
    blob = envelope.encrypt(KEY, b"", key_id=KEY_ID, chunk_size=SMALL_CHUNK)
    assert len(blob) == HEADER_LEN + TAG
    assert envelope.decrypt(KEY, blob, key_id=KEY_ID) == b""
    assert reason_of(blob[:-1]) == "truncated_body"


def test_exact_multiple_of_chunk_size_has_no_empty_trailing_chunk() -> None:
    blob = envelope.encrypt(KEY, b"x" * 12, key_id=KEY_ID, chunk_size=SMALL_CHUNK)
    assert len(blob) == HEADER_LEN + 3 * STRIDE
    assert envelope.decrypt(KEY, blob, key_id=KEY_ID) == b"x" * 12


def test_header_layout_is_the_documented_one() -> None:
    blob = small_blob()
    assert len(blob) == SMALL_LEN
    assert blob[:4] == b"SBXE"
    assert blob[4] == 1
    assert struct.unpack(">IH", blob[5:11]) == (SMALL_CHUNK, len(KEY_ID))
    assert blob[11 : 11 + len(KEY_ID)] == KEY_ID.encode()


def test_each_encryption_uses_a_fresh_nonce_prefix() -> None:
    first, second = small_blob(), small_blob()
    assert first[HEADER_LEN - 8 : HEADER_LEN] != second[HEADER_LEN - 8 : HEADER_LEN]
    assert first[HEADER_LEN:] != second[HEADER_LEN:]


def test_encrypt_to_streams_and_counts_bytes_written() -> None:
    out = io.BytesIO(b"already here")
    out.seek(0, io.SEEK_END)
    written = envelope.encrypt_to(out, KEY, SMALL_PLAIN, key_id=KEY_ID, chunk_size=SMALL_CHUNK)
    data = out.getvalue()
    assert written == len(data) - len(b"already here") == SMALL_LEN
    assert envelope.decrypt(KEY, data[len(b"already here") :], key_id=KEY_ID) == SMALL_PLAIN


def test_default_chunk_size_multi_chunk_round_trip() -> None:
    plaintext = bytes(2 * envelope.DEFAULT_CHUNK_SIZE + 5)  # 3 chunks of the default size, the last short
    blob = envelope.encrypt(KEY, plaintext, key_id=KEY_ID)
    assert envelope.decrypt(KEY, blob, key_id=KEY_ID) == plaintext
    assert len(blob) == HEADER_LEN + len(plaintext) + 3 * TAG


# --- tampering -------------------------------------------------------------------------------


def test_untampered_small_blob_decrypts() -> None:
    assert envelope.decrypt(KEY, small_blob(), key_id=KEY_ID) == SMALL_PLAIN


@pytest.mark.parametrize("pos", [pytest.param(pos, id=f"{position_class(pos)}-{pos}") for pos in range(SMALL_LEN)])
def test_flipping_any_byte_is_detected(pos: int) -> None:
    blob = bytearray(small_blob())
    blob[pos] ^= 1 << (pos % 8)
    reason_of(blob)


@SETTINGS
@given(
    plaintext=st.binary(max_size=120),
    chunk_size=st.integers(min_value=1, max_value=32),
    data=st.data(),
)
def test_flipping_any_bit_is_detected(plaintext: bytes, chunk_size: int, data: st.DataObject) -> None:
    blob = bytearray(envelope.encrypt(KEY, plaintext, key_id=KEY_ID, chunk_size=chunk_size))
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(blob) - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    reason_of(blob)


@pytest.mark.parametrize("length", range(SMALL_LEN))
def test_truncation_at_every_length_is_detected(length: int) -> None:
    reason_of(small_blob()[:length])


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        pytest.param(HEADER_LEN, "truncated_body", id="after-header"),
        pytest.param(CHUNK_STARTS[1], "bad_tag", id="after-first-chunk"),
        pytest.param(CHUNK_STARTS[2], "bad_tag", id="after-middle-chunk-drops-final"),
    ],
)
def test_truncation_at_chunk_boundary_fails_on_the_final_flag(length: int, expected: str) -> None:
    # At a chunk boundary the length still parses: only the final flag in the tag catches it.
    assert reason_of(small_blob()[:length]) == expected


def test_swapped_chunks_are_detected() -> None:
    blob = small_blob()
    first, middle, last = chunks(blob)
    assert reason_of(blob[:HEADER_LEN] + middle + first + last) == "bad_tag"


def test_duplicated_chunk_is_detected() -> None:
    blob = small_blob()
    first, middle, last = chunks(blob)
    assert reason_of(blob[:HEADER_LEN] + first + first + middle + last) == "bad_tag"


def test_dropped_middle_chunk_is_detected() -> None:
    blob = small_blob()
    first, _, last = chunks(blob)
    assert reason_of(blob[:HEADER_LEN] + first + last) == "bad_tag"


def test_chunk_spliced_from_another_envelope_is_detected() -> None:
    blob, other = small_blob(), small_blob()
    assert reason_of(blob[:HEADER_LEN] + chunks(other)[0] + b"".join(chunks(blob)[1:])) == "bad_tag"


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(b"\x00" * TAG, id="one-tag"),
        pytest.param(b"\x00" * (STRIDE + 2), id="more-than-a-chunk"),
    ],
)
def test_trailing_garbage_is_detected(garbage: bytes) -> None:
    reason_of(small_blob() + garbage)


def test_appended_copy_of_final_chunk_is_detected() -> None:
    blob = small_blob()
    reason_of(blob + chunks(blob)[-1])


def test_wrong_key_is_detected() -> None:
    assert reason_of(small_blob(), key=OTHER_KEY) == "bad_tag"


def test_wrong_expected_key_id_is_detected() -> None:
    assert reason_of(small_blob(), key_id="ds-key-2") == "key_id_mismatch"


def test_relabelled_key_id_in_header_is_detected() -> None:
    blob = small_blob()
    relabelled = blob.replace(KEY_ID.encode(), b"ds-key-2", 1)
    assert envelope.read_key_id(relabelled) == "ds-key-2"
    assert reason_of(relabelled, key_id="ds-key-2") == "bad_tag"


@pytest.mark.parametrize(
    ("offset", "value", "expected"),
    [
        pytest.param(0, b"XBXE", "bad_magic", id="magic"),
        pytest.param(4, b"\x02", "bad_version", id="version"),
        pytest.param(5, b"\x00\x00\x00\x00", "bad_chunk_size", id="chunk-size-zero"),
        pytest.param(5, b"\xff\xff\xff\xff", "bad_chunk_size", id="chunk-size-too-big"),
        pytest.param(9, b"\x00\x00", "bad_key_id", id="key-id-empty"),
        pytest.param(11, b"\xff", "bad_key_id", id="key-id-not-utf8"),
    ],
)
def test_malformed_header_is_rejected_with_reason(offset: int, value: bytes, expected: str) -> None:
    blob = bytearray(small_blob())
    blob[offset : offset + len(value)] = value
    with pytest.raises(IntegrityError) as info:
        envelope.read_key_id(bytes(blob))
    assert info.value.details["reason"] == expected
    assert reason_of(blob) == expected


@pytest.mark.parametrize("length", [0, 4, 10, HEADER_LEN - 1])
def test_read_key_id_rejects_truncated_header(length: int) -> None:
    with pytest.raises(IntegrityError):
        envelope.read_key_id(small_blob()[:length])


# --- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)], ids=lambda k: f"{len(k)}B")
def test_key_of_wrong_length_is_a_programming_error(key: bytes) -> None:
    with pytest.raises(InternalError):
        envelope.encrypt(key, b"data", key_id=KEY_ID)
    with pytest.raises(InternalError):
        envelope.decrypt(key, small_blob(), key_id=KEY_ID)


@pytest.mark.parametrize("chunk_size", [0, -1, 2**31 + 1])
def test_chunk_size_out_of_range_is_a_programming_error(chunk_size: int) -> None:
    with pytest.raises(InternalError):
        envelope.encrypt(KEY, b"data", key_id=KEY_ID, chunk_size=chunk_size)


def test_largest_chunk_size_is_accepted() -> None:
    blob = envelope.encrypt(KEY, b"data", key_id=KEY_ID, chunk_size=2**31)
    assert envelope.decrypt(KEY, blob, key_id=KEY_ID) == b"data"


@pytest.mark.parametrize("key_id", ["", "x" * 65536, "\ud800"], ids=["empty", "too-long", "surrogate"])
def test_invalid_key_id_is_a_programming_error(key_id: str) -> None:
    with pytest.raises(InternalError):
        envelope.encrypt(KEY, b"data", key_id=key_id)
