"""Data keys wrapped (encrypted) by the master key with AES-256-GCM, bound to their owner object.

Wrapped format: version byte 1 | 12-byte random nonce | ciphertext | 16-byte GCM tag, where the
ciphertext is as long as the wrapped secret: 32 bytes for a data key (61 bytes in all), more for
other secrets such as a PKCS#8 signing key (16 .. 1024 bytes are accepted). The associated
data is the version byte then three fields, each prefixed by its UTF-8 length as a u32
big-endian, so that no two different (label, master_key_id, context) triples encode alike::

    version | len | b"sandbox-keywrap-v1" | len | master_key_id | len | context

Threats answered:

* ``context`` names the object the key belongs to (e.g. ``"dataset-version:<uuid>"``), so a
  wrapped key copied onto another object's row fails to unwrap instead of silently decrypting
  that object's files with the wrong key, or letting one tenant's key open another's data.
* ``master_key_id`` is bound so that after a master-key rotation a blob cannot be mistaken for
  one wrapped under another master key.
* The nonce is 12 random bytes per wrap. GCM loses confidentiality and authenticity if a nonce
  repeats under one key; random 96-bit nonces stay within NIST SP 800-38D's 2**-32 bound for up to
  2**32 wraps per master key, far beyond one key per dataset version.
* Data keys come from the operating system's CSPRNG via pycryptodome, never from a password.

Any authentication or format failure raises ``core.errors.IntegrityError``; misuse by the caller
(a master key that is not 32 bytes, a secret outside 16 .. 1024 bytes, an empty key id or context)
raises ``core.errors.InternalError``.
"""

from __future__ import annotations

from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes

from core.errors import IntegrityError, InternalError

__all__ = ["KEY_BYTES", "generate_key", "new_key_id", "unwrap", "wrap"]

KEY_BYTES = 32
_WRAP_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MIN_SECRET_BYTES = 16
_MAX_SECRET_BYTES = 1024
_OVERHEAD = 1 + _NONCE_BYTES + _TAG_BYTES
_LABEL = b"sandbox-keywrap-v1"
_KEY_ID_PREFIX = "mk-"


def generate_key() -> bytes:
    """Return a fresh 32-byte AES-256 key from the operating system's CSPRNG."""
    return get_random_bytes(KEY_BYTES)


def new_key_id() -> str:
    """Return a fresh random key identifier: ``"mk-"`` followed by 16 lowercase hex characters.

    Identifiers are labels, not secrets; 64 random bits make accidental collisions negligible.
    """
    return _KEY_ID_PREFIX + get_random_bytes(8).hex()


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise InternalError(f"{what} must be {KEY_BYTES} bytes (AES-256)")


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _associated_data(master_key_id: str, context: str) -> bytes:
    if not master_key_id or not context:
        raise InternalError("keywrap master_key_id and context must be non-empty")
    try:
        parts = (master_key_id.encode("utf-8"), context.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InternalError("keywrap master_key_id and context must be valid UTF-8") from exc
    return _field(_LABEL) + _field(parts[0]) + _field(parts[1])


def wrap(master_key: bytes, master_key_id: str, key: bytes, *, context: str) -> bytes:
    """Encrypt secret ``key`` under ``master_key``, bound to ``master_key_id`` and ``context``.

    ``key`` is normally a 32-byte data key (the blob is then 61 bytes) but may be any secret of
    16 .. 1024 bytes. Only :func:`unwrap` with the same master key, master key id and context
    opens the blob. Wrapping the same key twice gives different blobs (fresh nonce).
    """
    _check_key(master_key, "master key")
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise InternalError(f"wrapped secret must be {_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} bytes")
    aad = _associated_data(master_key_id, context)
    nonce = get_random_bytes(_NONCE_BYTES)
    cipher = AES.new(master_key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(bytes([_WRAP_VERSION]) + aad)
    ciphertext, tag = cipher.encrypt_and_digest(key)
    return bytes([_WRAP_VERSION]) + nonce + ciphertext + tag


def unwrap(master_key: bytes, master_key_id: str, wrapped: bytes, *, context: str) -> bytes:
    """Return the secret inside ``wrapped``, or raise IntegrityError.

    Fails if the blob was tampered with, has the wrong length or version, or was wrapped under
    another master key, another master key id or another context.
    """
    _check_key(master_key, "master key")
    aad = _associated_data(master_key_id, context)
    if not _OVERHEAD + _MIN_SECRET_BYTES <= len(wrapped) <= _OVERHEAD + _MAX_SECRET_BYTES:
        raise IntegrityError("wrapped key has the wrong length", details={"reason": "bad_length"})
    if wrapped[0] != _WRAP_VERSION:
        raise IntegrityError("wrapped key has an unsupported version", details={"reason": "bad_version"})
    nonce = wrapped[1 : 1 + _NONCE_BYTES]
    ciphertext = wrapped[1 + _NONCE_BYTES : -_TAG_BYTES]
    tag = wrapped[-_TAG_BYTES:]
    cipher = AES.new(master_key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
    cipher.update(bytes([_WRAP_VERSION]) + aad)
    try:
        return cipher.decrypt_and_verify(ciphertext, tag)
    except ValueError:
        raise IntegrityError(
            "wrapped key failed authentication: tampered, wrong master key or wrong context",
            details={"reason": "bad_tag"},
        ) from None
