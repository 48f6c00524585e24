"""Tests of crypto.paillier: fixed-point encoding, the homomorphic operations, and rejection of bad keys and ciphertexts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import Decimal
from functools import cache

import gmpy2
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InternalError, ValidationFailed
from crypto import paillier

SETTINGS = settings(max_examples=40, deadline=None, database=None, derandomize=True)
SLOW_SETTINGS = settings(max_examples=12, deadline=None, database=None, derandomize=True)  # each example encrypts and decrypts


@cache
def keypair() -> paillier.KeyPair:
    return paillier.generate()


@cache
def other_keypair() -> paillier.KeyPair:
    return paillier.generate()


def mantissas() -> st.SearchStrategy[int]:
    """Signed mantissas across the whole range of the key, bounds included."""
    bound = keypair().public.max_int
    return st.one_of(
        st.integers(-(10**15), 10**15),
        st.integers(-bound, bound),
        st.sampled_from([0, 1, -1, bound, -bound, bound - 1, -bound + 1]),
    )


def prime(bits: int) -> int:
    return int(gmpy2.next_prime(secrets.randbits(bits) | (1 << (bits - 1))))


def composite(bits: int) -> int:
    """An odd composite of exactly ``bits`` bits (a product of two primes)."""
    while True:
        n = prime(bits // 2) * prime(bits - bits // 2)
        if n.bit_length() == bits:
            return n


# --- fixed-point encoding -------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), scale=st.integers(0, paillier.MAX_SCALE))
def test_encode_decode_round_trip(data: st.DataObject, scale: int) -> None:
    public = keypair().public
    mantissa = data.draw(mantissas())
    value = Decimal(f"{mantissa}e-{scale}")  # exact, unlike arithmetic in the default 28-digit context
    encoded = paillier.encode(value, scale, public)
    assert encoded == mantissa % public.n
    assert 0 <= encoded < public.n
    assert paillier.signed(encoded, public) == mantissa
    assert paillier.decode(encoded, scale, public) == value


@pytest.mark.parametrize(
    ("value", "scale", "mantissa"),
    [(1.5, 2, 150), (-1.5, 2, -150), ("0.125", 2, 12), ("0.135", 2, 14), (7, 0, 7), (-7, 12, -7 * 10**12), ("1e-12", 12, 1)],
    ids=["float", "negative-float", "half-even-down", "half-even-up", "int", "negative-int-scale-12", "smallest-step"],
)
def test_encode_rounds_to_the_scale(value: float | str, scale: int, mantissa: int) -> None:
    public = keypair().public
    assert paillier.signed(paillier.encode(value, scale, public), public) == mantissa


@pytest.mark.parametrize("sign", [1, -1], ids=["positive", "negative"])
@pytest.mark.parametrize("scale", [0, 5, paillier.MAX_SCALE], ids=["scale-0", "scale-5", "scale-12"])
def test_encode_rejects_values_past_the_bound(sign: int, scale: int) -> None:
    public = keypair().public
    bound = Decimal(f"{sign * public.max_int}e-{scale}")
    past = Decimal(f"{sign * (public.max_int + 1)}e-{scale}")
    assert paillier.signed(paillier.encode(bound, scale, public), public) == sign * public.max_int
    with pytest.raises(ValueError, match="too large"):
        paillier.encode(past, scale, public)


@pytest.mark.parametrize("value", ["1e100000", "-1e5000", str(10**700)], ids=["huge-exponent", "negative-huge", "long-integer"])
def test_encode_rejects_huge_values_without_building_them(value: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        paillier.encode(value, 2, keypair().public)


def test_encode_keeps_every_digit_of_a_large_value() -> None:
    public = keypair().public
    value = 10**40 + 1  # more digits than the default decimal context's 28
    assert paillier.signed(paillier.encode(value, 3, public), public) == value * 1000
    assert paillier.decode(paillier.encode(value, 3, public), 3, public) == value


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc"], ids=["nan", "inf", "-inf", "text"])
def test_encode_rejects_non_numbers(value: str) -> None:
    with pytest.raises(ValueError, match="number"):
        paillier.encode(value, 2, keypair().public)


@pytest.mark.parametrize("scale", [-1, 13, True, 2.0], ids=["negative", "past-max", "bool", "float"])
def test_bad_scales_are_rejected(scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        paillier.encode(1, scale, keypair().public)  # type: ignore[arg-type]


@pytest.mark.parametrize("offset", [1, 2], ids=["just-past-max", "next"])
def test_the_overflow_band_does_not_decode(offset: int) -> None:
    public = keypair().public
    with pytest.raises(OverflowError):
        paillier.signed(public.max_int + offset, public)
    with pytest.raises(OverflowError):
        paillier.signed(public.n - public.max_int - offset, public)


# --- homomorphic operations -----------------------------------------------------------------------


@SLOW_SETTINGS
@given(x=st.integers(-(10**30), 10**30), y=st.integers(-(10**30), 10**30))
def test_add_is_the_sum_of_the_plaintexts(x: int, y: int) -> None:
    pair = keypair()
    public = pair.public
    total = paillier.add(public, paillier.encrypt(public, x % public.n), paillier.encrypt(public, y % public.n))
    assert paillier.signed(paillier.decrypt(pair.private, total), public) == x + y


@SLOW_SETTINGS
@given(x=st.integers(-(10**30), 10**30), k=st.integers(-(10**30), 10**30))
def test_scalar_mul_is_the_product_with_a_signed_scalar(x: int, k: int) -> None:
    pair = keypair()
    public = pair.public
    product = paillier.scalar_mul(public, paillier.encrypt(public, x % public.n), k % public.n)
    assert paillier.signed(paillier.decrypt(pair.private, product), public) == x * k


def test_encrypted_zero_is_the_additive_identity() -> None:
    pair = keypair()
    c = paillier.encrypt(pair.public, 42)
    assert paillier.decrypt(pair.private, paillier.encrypted_zero(pair.public)) == 0
    assert paillier.add(pair.public, c, paillier.encrypted_zero(pair.public)) == c


def test_standard_encryption_is_randomised() -> None:
    public = keypair().public
    assert paillier.encrypt(public, 5) != paillier.encrypt(public, 5)


# --- public keys from outside ---------------------------------------------------------------------


def test_public_key_round_trips_through_its_dict() -> None:
    public = keypair().public
    data = public.as_dict()
    assert data["bits"] == 2048
    assert paillier.PublicKey.from_dict(data) == public
    assert paillier.PublicKey.from_dict({"n": public.n}) == public  # n as an int, no fingerprint


def bad_key(case: str) -> object:
    """Only the case asked for is built: primes of 1,024 to 2,048 bits take a moment."""
    n = keypair().public.n
    build: dict[str, Callable[[], object]] = {
        "not-a-dict": lambda: [str(n)],
        "wrong-scheme": lambda: {"scheme": "rsa", "n": str(n)},
        "n-missing": lambda: {"scheme": "paillier"},
        "n-not-decimal": lambda: {"n": "0x" + format(n, "x")},
        "even-n": lambda: {"n": str(n + 1)},
        "prime-n": lambda: {"n": str(prime(2048))},
        "too-small": lambda: {"n": str(composite(1024))},
        "off-by-one-bit": lambda: {"n": str(composite(2047))},
        "too-large": lambda: {"n": str(n * other_keypair().public.n)},
        "fingerprint-mismatch": lambda: {"n": str(n), "fingerprint": other_keypair().public.fingerprint},
    }
    return build[case]()


BAD_KEYS = [
    ("not-a-dict", "must be"),
    ("wrong-scheme", "must be"),
    ("n-missing", "must be"),
    ("n-not-decimal", "not a decimal integer"),
    ("even-n", "odd"),
    ("prime-n", "composite"),
    ("too-small", "2048 or 3072-bit"),
    ("off-by-one-bit", "2048 or 3072-bit"),
    ("too-large", "2048 or 3072-bit"),
    ("fingerprint-mismatch", "fingerprint does not match"),
]


@pytest.mark.parametrize(("case", "message"), BAD_KEYS, ids=[case for case, _ in BAD_KEYS])
def test_public_key_from_dict_rejects(case: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as info:
        paillier.PublicKey.from_dict(bad_key(case), field="spec.public_key")
    assert info.value.details == {"field": "spec.public_key"}


@cache
def large_public() -> paillier.PublicKey:
    return paillier.generate(3072).public


def test_a_3072_bit_key_is_accepted_and_sized() -> None:
    public = paillier.PublicKey.from_dict({"n": str(large_public().n)})
    assert public.bits == 3072
    assert public.ciphertext_bytes == 768


# --- ciphertexts from outside ---------------------------------------------------------------------


def column_of(*values: bytes | None) -> pa.Array:
    return pa.array(list(values), pa.binary())


def test_good_ciphertexts_and_nulls_pass_the_check() -> None:
    public = keypair().public
    column = paillier.to_arrow(public, [paillier.encrypt(public, 1), None, paillier.encrypt(public, 2)])
    assert column.type == pa.binary(512)
    assert paillier.check_ciphertexts(public, column, "income") == []
    assert paillier.from_arrow(column)[1] is None


def tampered(case: str) -> bytes:
    pair = keypair()
    public, width = pair.public, pair.public.ciphertext_bytes
    build: dict[str, Callable[[], bytes]] = {
        "short": lambda: paillier.to_bytes(public, paillier.encrypt(public, 7))[1:],
        "long": lambda: b"\0" + paillier.to_bytes(public, paillier.encrypt(public, 7)),
        "zero": lambda: bytes(width),
        "n-squared": lambda: public.nsquare.to_bytes(width, "big"),
        "all-ones": lambda: b"\xff" * width,
        "multiple-of-p": lambda: (pair.private.p * secrets.randbits(1500)).to_bytes(width, "big"),
        "multiple-of-q": lambda: (pair.private.q * 12345).to_bytes(width, "big"),
    }
    return build[case]()


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("short", "1 ciphertexts are not 512 bytes long"),
        ("long", "1 ciphertexts are not 512 bytes long"),
        ("zero", "1 ciphertexts are outside the key's range"),
        ("n-squared", "1 ciphertexts are outside the key's range"),
        ("all-ones", "1 ciphertexts are outside the key's range"),
        ("multiple-of-p", "1 ciphertexts are not valid for this key"),
        ("multiple-of-q", "1 ciphertexts are not valid for this key"),
    ],
    ids=["short", "long", "zero", "n-squared", "all-ones", "multiple-of-p", "multiple-of-q"],
)
def test_check_ciphertexts_finds_tampered_values(case: str, problem: str) -> None:
    public = keypair().public
    good = paillier.to_bytes(public, paillier.encrypt(public, 1))
    problems = paillier.check_ciphertexts(public, column_of(good, tampered(case), None, good), "income")
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_check_ciphertexts_counts_each_kind_once() -> None:
    public = keypair().public
    column = column_of(tampered("short"), tampered("zero"), tampered("all-ones"), tampered("multiple-of-p"), tampered("multiple-of-p"))
    assert [p.split(" ciphertexts")[0] for p in paillier.check_ciphertexts(public, column, "income")] == ["1", "2", "2"]


def test_check_ciphertexts_rejects_non_binary_columns() -> None:
    problems = paillier.check_ciphertexts(keypair().public, pa.array(["12345"]), "income")
    assert problems == ["ciphertexts must be binary values of 512 bytes (found string)"]


def test_a_ciphertext_of_a_larger_key_has_the_wrong_length() -> None:
    large = large_public()
    column = paillier.to_arrow(large, [paillier.encrypt(large, 3)])
    assert paillier.check_ciphertexts(keypair().public, column, "income") == [
        "1 ciphertexts are not 512 bytes long (wrong key size, or not ciphertexts of this key)"
    ]


def test_a_ciphertext_of_another_key_of_the_same_size_is_bound_only_by_the_fingerprint() -> None:
    """Same length, so the check cannot tell: the column's recorded fingerprint is what binds it; decrypting gives noise."""
    smaller, larger = sorted([keypair(), other_keypair()], key=lambda pair: pair.public.n)
    foreign = paillier.encrypt(smaller.public, 1234)  # below the smaller n², so inside the larger key's range
    assert smaller.public.fingerprint != larger.public.fingerprint
    assert paillier.check_ciphertexts(larger.public, paillier.to_arrow(smaller.public, [foreign]), "income") == []
    assert paillier.decrypt(larger.private, foreign) != 1234
    assert paillier.decrypt(smaller.private, foreign) == 1234


@pytest.mark.parametrize(
    "case",
    ["bool", "float", "text", "zero", "n-squared", "multiple-of-p"],
    ids=["bool", "float", "text", "zero", "n-squared", "multiple-of-p"],
)
def test_parse_ciphertext_rejects(case: str) -> None:
    pair = keypair()
    value = {
        "bool": True,
        "float": 1.5,
        "text": "12ab",
        "zero": "0",
        "n-squared": str(pair.public.nsquare),
        "multiple-of-p": str(pair.private.p * 3),
    }[case]
    with pytest.raises(ValidationFailed, match=r"spec\.weights\[0\]"):
        paillier.parse_ciphertext(pair.public, value, "spec.weights[0]")


def test_parse_ciphertext_accepts_decimal_strings_and_ints() -> None:
    public = keypair().public
    c = paillier.encrypt(public, 9)
    assert paillier.parse_ciphertext(public, str(c), "w") == paillier.parse_ciphertext(public, c, "w") == c


def test_private_key_round_trips_and_refuses_another_key() -> None:
    pair, other = keypair(), other_keypair()
    restored = paillier.private_from_bytes(pair.public, paillier.private_to_bytes(pair.private))
    assert restored.raw_decrypt(paillier.encrypt(pair.public, 77)) == 77
    with pytest.raises(InternalError, match="does not belong"):
        paillier.private_from_bytes(pair.public, paillier.private_to_bytes(other.private))


def test_digest_depends_on_order_and_boundaries() -> None:
    assert paillier.digest([b"ab", b"c"]) != paillier.digest([b"a", b"bc"])
    assert paillier.digest([b"a", b"b"]) != paillier.digest([b"b", b"a"])
