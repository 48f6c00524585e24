"""Authenticated, chunked AES-256-GCM envelope for dataset files at rest.

Format (all integers big-endian)::

    header = b"SBXE"                      magic, 4 bytes
           | version                      1 byte, currently 1
           | chunk_size                   u32, 1 .. 2**31
           | len(key_id) | key_id         u16 + UTF-8 bytes, 1 .. 65535 bytes
           | nonce_prefix                 8 random bytes, fresh for every envelope
    body   = chunk_0 | chunk_1 | ... | chunk_{n-1}
    chunk_i = AES-256-GCM(key, nonce = nonce_prefix | u32(i),
                          aad = header | u64(i) | final_flag,
                          plaintext[i*chunk_size : (i+1)*chunk_size]) ciphertext | 16-byte tag

``final_flag`` is 1 for the last chunk and 0 for every other one. Every chunk but the last holds
exactly ``chunk_size`` plaintext bytes, so it is stored as exactly ``chunk_size + 16`` bytes; the
remainder of the body is the last chunk, which holds 1 .. ``chunk_size`` bytes, except that an
empty plaintext is stored as exactly one empty final chunk (a bare tag).

Why each part is there (the threat it answers):

* The whole header is associated data of every chunk, so editing the magic, version, chunk size,
  key id or nonce prefix, or splicing chunks from another envelope, fails authentication.
* The chunk index is in the nonce and in the associated data, so reordering or duplicating chunks
  fails authentication.
* The final flag is in the associated data, so truncating the file, even exactly at a chunk
  boundary, fails: the new last chunk was sealed with flag 0 and is now opened with flag 1.
* GCM breaks completely if a (key, nonce) pair repeats: it leaks the XOR of two plaintexts and lets
  an attacker forge tags. Nonces are unique within an envelope through the chunk counter (at most
  2**32 chunks) and across envelopes through the random 8-byte prefix, which collides with
  probability about n**2 / 2**65 after n envelopes under one key. Keys are meant to be per object
  (see ``crypto.keywrap``), so n stays tiny; never encrypt billions of files under one key.
* One GCM object per chunk keeps every chunk below GCM's 64 GiB single-message limit, lets the
  format be streamed, and costs one key setup per ``chunk_size`` bytes, not per byte.

Authentication failures raise ``core.errors.IntegrityError`` (never a partial plaintext); misuse by
the caller, such as a key that is not 32 bytes, raises ``core.errors.InternalError``.
"""

from __future__ import annotations

import io
import struct
import typing
from dataclasses import dataclass

from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes

from core.errors import IntegrityError, InternalError

if typing.TYPE_CHECKING:
    from Crypto.Cipher._mode_gcm import GcmMode

__all__ = ["DEFAULT_CHUNK_SIZE", "ByteSink", "decrypt", "encrypt", "encrypt_to", "read_key_id"]

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024

_MAGIC = b"SBXE"
_FORMAT_VERSION = 1
_KEY_BYTES = 32
_TAG_BYTES = 16
_NONCE_PREFIX_BYTES = 8
_MAX_CHUNK_SIZE = 2**31
_MAX_CHUNKS = 2**32
_MAX_KEY_ID_BYTES = 2**16 - 1

_FIXED = struct.Struct(">4sBIH")  # magic, version, chunk_size, key_id length
_CHUNK_AAD = struct.Struct(">QB")  # chunk index, final flag


class ByteSink(typing.Protocol):
    """Where :func:`encrypt_to` writes: only ``write`` is used, so a file, ``io.BytesIO`` or a
    wrapper that hashes what passes through all qualify."""

    def write(self, data: bytes, /) -> int: ...


_Buffer: typing.TypeAlias = bytes | bytearray | memoryview


@dataclass(frozen=True)
class _Header:
    raw: bytes
    chunk_size: int
    key_id: str
    nonce_prefix: bytes


def _fail(message: str, reason: str) -> IntegrityError:
    return IntegrityError(message, details={"reason": reason})


def _byte_view(data: _Buffer) -> memoryview:
    """A flat unsigned-byte view of ``data``, without copying it."""
    try:
        return memoryview(data).cast("B")
    except TypeError as exc:
        raise InternalError("envelope input must be a contiguous byte buffer") from exc


def _check_key(key: bytes) -> None:
    if len(key) != _KEY_BYTES:
        raise InternalError(f"envelope key must be {_KEY_BYTES} bytes (AES-256)")


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not 1 <= chunk_size <= _MAX_CHUNK_SIZE:
        raise InternalError(f"envelope chunk_size must be between 1 and {_MAX_CHUNK_SIZE}")


def _encode_key_id(key_id: str) -> bytes:
    try:
        encoded = key_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InternalError("envelope key_id is not encodable as UTF-8") from exc
    if not 1 <= len(encoded) <= _MAX_KEY_ID_BYTES:
        raise InternalError(f"envelope key_id must be 1 to {_MAX_KEY_ID_BYTES} UTF-8 bytes")
    return encoded


def _new_header(chunk_size: int, key_id: str) -> _Header:
    encoded = _encode_key_id(key_id)
    prefix = get_random_bytes(_NONCE_PREFIX_BYTES)
    raw = _FIXED.pack(_MAGIC, _FORMAT_VERSION, chunk_size, len(encoded)) + encoded + prefix
    return _Header(raw=raw, chunk_size=chunk_size, key_id=key_id, nonce_prefix=prefix)


def _parse_header(view: memoryview) -> _Header:
    """Parse and validate the header at the start of ``view``; IntegrityError if malformed."""
    if len(view) < _FIXED.size:
        raise _fail("envelope is truncated inside its header", "truncated_header")
    magic, version, chunk_size, key_id_len = _FIXED.unpack_from(view)
    if magic != _MAGIC:
        raise _fail("envelope has a bad magic number: not a sandbox envelope", "bad_magic")
    if version != _FORMAT_VERSION:
        raise _fail("envelope has an unsupported format version", "bad_version")
    if not 1 <= chunk_size <= _MAX_CHUNK_SIZE:
        raise _fail("envelope header declares an invalid chunk size", "bad_chunk_size")
    if key_id_len == 0:
        raise _fail("envelope header declares an empty key id", "bad_key_id")
    end = _FIXED.size + key_id_len + _NONCE_PREFIX_BYTES
    if len(view) < end:
        raise _fail("envelope is truncated inside its header", "truncated_header")
    try:
        key_id = bytes(view[_FIXED.size : _FIXED.size + key_id_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("envelope header key id is not valid UTF-8", "bad_key_id") from None
    raw = bytes(view[:end])
    prefix = raw[-_NONCE_PREFIX_BYTES:]
    return _Header(raw=raw, chunk_size=chunk_size, key_id=key_id, nonce_prefix=prefix)


def _chunk_cipher(key: bytes, header: _Header, index: int, final: bool) -> GcmMode:
    """A fresh GCM object for chunk ``index``, with its associated data already absorbed."""
    nonce = header.nonce_prefix + index.to_bytes(4, "big")
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(header.raw + _CHUNK_AAD.pack(index, 1 if final else 0))
    return cipher


def encrypt_to(
    out: ByteSink,
    key: bytes,
    plaintext: bytes | bytearray | memoryview,
    *,
    key_id: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Write the envelope of ``plaintext`` to ``out`` chunk by chunk; return the bytes written.

    ``key`` must be 32 bytes and ``key_id`` names it (1 .. 65535 UTF-8 bytes); both are bound into
    every chunk. A fresh random nonce prefix is drawn on every call, so encrypting the same
    plaintext twice gives unrelated envelopes. Raises InternalError on misuse.
    """
    _check_key(key)
    _check_chunk_size(chunk_size)
    view = _byte_view(plaintext)
    n_chunks = max(1, -(-len(view) // chunk_size))
    if n_chunks > _MAX_CHUNKS:
        raise InternalError("plaintext needs more than 2**32 chunks: raise chunk_size")
    header = _new_header(chunk_size, key_id)
    out.write(header.raw)
    written = len(header.raw)
    for index in range(n_chunks):
        final = index == n_chunks - 1
        cipher = _chunk_cipher(key, header, index, final)
        piece = view[index * chunk_size : (index + 1) * chunk_size]
        ciphertext, tag = cipher.encrypt_and_digest(piece)
        out.write(ciphertext)
        out.write(tag)
        written += len(ciphertext) + len(tag)
    return written


def encrypt(
    key: bytes,
    plaintext: bytes | bytearray | memoryview,
    *,
    key_id: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Return the envelope of ``plaintext`` as bytes; same contract as :func:`encrypt_to`."""
    buffer = io.BytesIO()
    encrypt_to(buffer, key, plaintext, key_id=key_id, chunk_size=chunk_size)
    return buffer.getvalue()


def _count_chunks(body_len: int, chunk_size: int) -> int:
    """Number of chunks in a body of ``body_len`` bytes; IntegrityError if no layout fits."""
    stride = chunk_size + _TAG_BYTES
    if body_len < _TAG_BYTES:
        raise _fail("envelope is truncated: the final chunk is missing", "truncated_body")
    n_chunks = max(1, -(-body_len // stride))
    final_len = body_len - (n_chunks - 1) * stride
    # The writer never emits an empty final chunk after full ones, nor a final chunk shorter
    # than its tag: any such layout is a truncation or trailing garbage.
    if final_len < _TAG_BYTES or (n_chunks > 1 and final_len == _TAG_BYTES):
        raise _fail("envelope body has an invalid length: truncated or extended", "bad_length")
    if n_chunks > _MAX_CHUNKS:
        raise _fail("envelope body has more than 2**32 chunks", "bad_length")
    return n_chunks


def decrypt(key: bytes, blob: bytes | memoryview, *, key_id: str) -> bytes:
    """Authenticate and decrypt an envelope made by :func:`encrypt` under ``key`` and ``key_id``.

    Returns the plaintext only if every chunk authenticates; otherwise raises IntegrityError
    (tampering, truncation, reordering, trailing bytes, wrong key, or a header key id other than
    ``key_id``). A key that is not 32 bytes raises InternalError.
    """
    _check_key(key)
    _encode_key_id(key_id)
    view = _byte_view(blob)
    header = _parse_header(view)
    if header.key_id != key_id:
        raise _fail("envelope was sealed under a different key id", "key_id_mismatch")
    body = view[len(header.raw) :]
    n_chunks = _count_chunks(len(body), header.chunk_size)
    stride = header.chunk_size + _TAG_BYTES
    pieces: list[bytes] = []
    for index in range(n_chunks):
        chunk = body[index * stride : (index + 1) * stride]
        cipher = _chunk_cipher(key, header, index, index == n_chunks - 1)
        try:
            pieces.append(cipher.decrypt_and_verify(chunk[:-_TAG_BYTES], chunk[-_TAG_BYTES:]))
        except ValueError:
            message = "envelope chunk failed authentication: tampered, truncated or wrong key"
            raise _fail(message, "bad_tag") from None
    return b"".join(pieces)


def read_key_id(blob: bytes | memoryview) -> str:
    """Return the key id named in an envelope's header, without a key and without authenticating.

    The answer is only a hint for choosing the key: it is authenticated later by :func:`decrypt`.
    Raises IntegrityError if the header is malformed or truncated.
    """
    return _parse_header(_byte_view(blob)).key_id
