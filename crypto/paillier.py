"""Paillier keys, fixed-point encoding and ciphertext columns, on top of ``phe`` (with ``gmpy2``).

Keys are standard ``phe`` keys (g = n + 1), so anything encrypted or aggregated here decrypts with
``phe.PaillierPrivateKey.raw_decrypt`` and vice versa. Values are fixed-point decimals with an
explicit ``scale`` per column: ``x`` is encoded as the integer ``round(x * 10**scale)``, negative
numbers as ``n - |m|`` (phe's convention, ``|m| <= max_int = n // 3``), so that homomorphic sums of
mantissas of one scale decode to the sum of the values.

A ciphertext travels as a fixed-length big-endian byte string (the length of n², i.e. 512 bytes
for a 2048-bit key), in Arrow ``fixed_size_binary`` columns. Anything received from outside is
checked with ``check_ciphertexts``: right length, 0 < c < n², and gcd(c, n) = 1. A ciphertext is
bound to its key by the column's recorded key fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

import gmpy2
import pyarrow as pa
from phe import paillier

from core.errors import InternalError, ValidationFailed

KEY_SIZES = (2048, 3072)
DEFAULT_KEY_SIZE = 2048
MAX_SCALE = 12  # decimal digits after the point; beyond this, fixed point is not the right tool

Mpz = Any  # gmpy2.mpz has no type stubs

# Decimal arithmetic without rounding to a precision: the default context keeps 28 digits, which
# would silently change large mantissas (and let a value past ``max_int`` round back into range).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key with its fingerprint; ``phe`` is the standard phe key object."""

    n: int

    @property
    def phe(self) -> paillier.PaillierPublicKey:
        return paillier.PaillierPublicKey(self.n)

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def max_int(self) -> int:
        return self.n // 3

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of one serialised ciphertext: enough for any value below n²."""
        return (self.nsquare.bit_length() + 7) // 8

    @property
    def fingerprint(self) -> str:
        """SHA-256 over a domain-separated encoding of n: names the key in schemas, specs and the ledger."""
        n_bytes = self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")
        return hashlib.sha256(b"sandbox-paillier-v1:" + n_bytes).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {"scheme": "paillier", "n": str(self.n), "bits": self.bits, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: Any, *, field: str = "public_key") -> PublicKey:
        """Parse a public key received from outside; a bad one is a ``ValidationFailed`` naming ``field``."""
        if not isinstance(data, dict) or data.get("scheme", "paillier") != "paillier" or not isinstance(data.get("n"), str | int):
            raise ValidationFailed(f"{field} must be {{'scheme': 'paillier', 'n': '<decimal>'}}", details={"field": field})
        try:
            n = int(data["n"])
        except ValueError:
            raise ValidationFailed(f"{field}: n is not a decimal integer", details={"field": field}) from None
        if n.bit_length() not in KEY_SIZES or n % 2 == 0 or gmpy2.is_prime(n):
            raise ValidationFailed(f"{field}: n must be an odd {' or '.join(map(str, KEY_SIZES))}-bit composite", details={"field": field})
        key = cls(n)
        claimed = data.get("fingerprint")
        if claimed is not None and claimed != key.fingerprint:
            raise ValidationFailed(f"{field}: the fingerprint does not match n", details={"field": field})
        return key


@dataclass(frozen=True)
class KeyPair:
    public: PublicKey
    private: paillier.PaillierPrivateKey


def generate(bits: int = DEFAULT_KEY_SIZE) -> KeyPair:
    if bits not in KEY_SIZES:
        raise ValueError(f"key size must be one of {KEY_SIZES}")
    public, private = paillier.generate_paillier_keypair(n_length=bits)
    return KeyPair(PublicKey(public.n), private)


def private_to_bytes(private: paillier.PaillierPrivateKey) -> bytes:
    """The private key's primes as JSON bytes: to be wrapped (``crypto.keywrap``), never stored as is."""
    return json.dumps({"p": str(private.p), "q": str(private.q)}).encode()


def private_from_bytes(public: PublicKey, data: bytes) -> paillier.PaillierPrivateKey:
    raw = json.loads(data)
    p, q = int(raw["p"]), int(raw["q"])
    if p * q != public.n:
        raise InternalError("the private key does not belong to this public key")
    return paillier.PaillierPrivateKey(public.phe, p, q)


# --- fixed-point encoding -------------------------------------------------------------------------


def check_scale(scale: int) -> int:
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be an integer from 0 to {MAX_SCALE}")
    return scale


def encode(value: float | int | str | Decimal, scale: int, public: PublicKey) -> int:
    """The mantissa of ``value`` at ``scale`` decimal digits, as an integer mod n (negatives as n - |m|)."""
    try:
        exact = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not exact.is_finite():
        raise ValueError("not a finite number")
    scaled = exact.scaleb(check_scale(scale), context=_EXACT)
    if scaled.adjusted() > public.bits // 3:  # |value| >= 10^(bits/3) >= 2^bits: refused before ``int`` builds it
        raise ValueError("the value is too large for the key at this scale")
    mantissa = int(scaled.to_integral_value(context=_EXACT))
    if abs(mantissa) > public.max_int:
        raise ValueError("the value is too large for the key at this scale")
    return mantissa % public.n


def signed(mantissa: int, public: PublicKey) -> int:
    """A decrypted mantissa back to a signed integer; a value in the overflow band is an error."""
    if mantissa <= public.max_int:
        return mantissa
    if mantissa >= public.n - public.max_int:
        return mantissa - public.n
    raise OverflowError("the decrypted value overflowed the key's range")


def decode(mantissa: int, scale: int, public: PublicKey) -> Decimal:
    return Decimal(signed(mantissa, public)).scaleb(-check_scale(scale), context=_EXACT)


# --- encryption and decryption (the reference path; bulk encryption lives in crypto.paillier_bulk) ---


def encrypt(public: PublicKey, mantissa: int) -> int:
    """Standard Paillier encryption of an encoded mantissa: (1 + m n) r^n mod n² (phe's own code)."""
    ciphertext: int = public.phe.raw_encrypt(mantissa)
    return ciphertext


def decrypt(private: paillier.PaillierPrivateKey, ciphertext: int) -> int:
    """The mantissa mod n (see ``signed``/``decode``)."""
    plaintext: int = private.raw_decrypt(ciphertext)
    return plaintext


def add(public: PublicKey, a: int, b: int) -> int:
    """Enc(x) ⊕ Enc(y) = Enc(x + y)."""
    return int(gmpy2.mul(a, b) % public.nsquare)


def scalar_mul(public: PublicKey, ciphertext: int, k: int) -> int:
    """Enc(x) ⊗ k = Enc(k x), for k an encoded mantissa mod n (negatives via the inverse)."""
    k %= public.n
    nsq = public.nsquare
    if k > public.n - public.max_int:  # negative: invert, then raise to |k|; far cheaper than a huge exponent
        return int(gmpy2.powmod(gmpy2.invert(ciphertext, nsq), public.n - k, nsq))
    return int(gmpy2.powmod(ciphertext, k, nsq))


def encrypted_zero(public: PublicKey) -> int:
    """The trivial encryption of 0 (r = 1): an additive identity, never released as is."""
    return 1


# --- serialisation and validation -----------------------------------------------------------------


def to_bytes(public: PublicKey, ciphertext: int) -> bytes:
    return int(ciphertext).to_bytes(public.ciphertext_bytes, "big")


def from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "big")


def arrow_type(public: PublicKey) -> pa.DataType:
    return pa.binary(public.ciphertext_bytes)


def to_arrow(public: PublicKey, ciphertexts: Iterable[int | None]) -> pa.Array:
    return pa.array([None if c is None else to_bytes(public, c) for c in ciphertexts], arrow_type(public))


def from_arrow(column: pa.Array | pa.ChunkedArray) -> list[int | None]:
    return [None if value is None else from_bytes(value) for value in column.to_pylist()]


def check_ciphertexts(public: PublicKey, column: pa.Array | pa.ChunkedArray, name: str) -> list[str]:
    """Problems with a column of ciphertexts received from outside (counts only, never a value)."""
    width = public.ciphertext_bytes
    if not (pa.types.is_fixed_size_binary(column.type) or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return [f"ciphertexts must be binary values of {width} bytes (found {column.type})"]
    wrong_length = out_of_range = not_units = 0
    nsq, n = public.nsquare, public.n
    for value in column.to_pylist():
        if value is None:
            continue
        if len(value) != width:
            wrong_length += 1
            continue
        c = gmpy2.mpz(int.from_bytes(value, "big"))
        if not 0 < c < nsq:
            out_of_range += 1
        elif gmpy2.gcd(c, n) != 1:
            not_units += 1
    problems = []
    if wrong_length:
        problems.append(f"{wrong_length} ciphertexts are not {width} bytes long (wrong key size, or not ciphertexts of this key)")
    if out_of_range:
        problems.append(f"{out_of_range} ciphertexts are outside the key's range (0, n²)")
    if not_units:
        problems.append(f"{not_units} ciphertexts are not valid for this key")
    return problems


def parse_ciphertext(public: PublicKey, value: Any, field: str) -> int:
    """One ciphertext from JSON: a decimal string or an int; checked like a column's."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationFailed(f"{field} must be a ciphertext as a decimal string", details={"field": field})
    try:
        c = int(value)
    except ValueError:
        raise ValidationFailed(f"{field} must be a ciphertext as a decimal string", details={"field": field}) from None
    if not 0 < c < public.nsquare or gmpy2.gcd(c, public.n) != 1:
        raise ValidationFailed(f"{field} is not a valid ciphertext of the stated key", details={"field": field})
    return c


def digest(ciphertexts: Sequence[bytes]) -> str:
    """SHA-256 over length-prefixed ciphertexts: what a release decision signs for a cell."""
    h = hashlib.sha256()
    for c in ciphertexts:
        h.update(len(c).to_bytes(4, "big"))
        h.update(c)
    return h.hexdigest()
