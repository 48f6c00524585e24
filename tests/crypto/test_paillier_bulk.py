"""Tests of crypto.paillier_bulk: the short-exponent encryptor decrypts with phe's standard key, and
group sums and linear scores equal both the plaintext computation and the reference kernels."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import gmpy2
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier as phe

from crypto import paillier, paillier_bulk
from crypto.paillier_kernels import FixedBase

SETTINGS = settings(max_examples=10, deadline=None, database=None, derandomize=True)
SIGNED = st.integers(-(10**12), 10**12)


@cache
def keypair() -> paillier.KeyPair:
    return paillier.generate()


@cache
def encryptor() -> paillier_bulk.Encryptor:
    return paillier_bulk.Encryptor.create(keypair().public)


def decrypt_signed(ciphertexts: Sequence[int]) -> list[int]:
    pair = keypair()
    return [paillier.signed(pair.private.raw_decrypt(c), pair.public) for c in ciphertexts]


def encrypt(values: Sequence[int]) -> list[int]:
    return paillier_bulk.encrypt_mantissas(keypair().public, values, encryptor=encryptor(), processes=1)


# The reference kernels: the straightforward definitions the fast ones must equal, ciphertext for ciphertext.


def reference_group_sums(public: paillier.PublicKey, values: list[bytes | None], groups: list[int], n_groups: int) -> list[int]:
    sums = [paillier.encrypted_zero(public)] * n_groups
    for value, group in zip(values, groups, strict=True):
        if value is not None:
            sums[group] = paillier.add(public, sums[group], paillier.from_bytes(value))
    return sums


def reference_scores(public: paillier.PublicKey, weights: list[int], intercept: int, features: list[list[int]]) -> list[int]:
    scores = []
    for row in features:
        acc = intercept
        for weight, x in zip(weights, row, strict=True):
            if x % public.n:
                acc = paillier.add(public, acc, paillier.scalar_mul(public, weight, x))
        scores.append(acc)
    return scores


# --- the fixed-base table -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(exponent=st.integers(0, 2**40 - 1), acc=st.integers(1, 10**6))
def test_fixed_base_equals_powmod(exponent: int, acc: int) -> None:
    modulus = 1_000_003 * 999_983
    table = FixedBase(5, modulus, 40)
    assert table.bits == 40
    assert table.times_power(acc, exponent) == acc * pow(5, exponent, modulus) % modulus


def test_fixed_base_refuses_wider_exponents() -> None:
    with pytest.raises(OverflowError):
        FixedBase(5, 101, 16).times_power(1, 2**16)


# --- short-exponent encryption --------------------------------------------------------------------


@SETTINGS
@given(values=st.lists(st.one_of(SIGNED, st.sampled_from(["max", "-max"])), min_size=1, max_size=6))
def test_fast_encryption_decrypts_with_the_standard_private_key(values: list[int | str]) -> None:
    bound = keypair().public.max_int
    mantissas = [{"max": bound, "-max": -bound}.get(v, v) if isinstance(v, str) else v for v in values]
    assert decrypt_signed(encrypt([m % keypair().public.n for m in mantissas])) == mantissas


def test_fast_encryption_takes_signed_integers_as_mantissas_mod_n() -> None:
    public = keypair().public
    assert decrypt_signed(encrypt([-5, public.n - 5, 5])) == [-5, -5, 5]


def test_fast_ciphertexts_decrypt_as_phe_encrypted_numbers_at_exponent_0() -> None:
    pair = keypair()
    values = [0, 1, -1, 123456789, -(10**20)]
    numbers = [phe.EncryptedNumber(pair.public.phe, c, exponent=0) for c in encrypt(values)]
    assert [pair.private.decrypt(number) for number in numbers] == values
    total = numbers[0] + numbers[1] + numbers[3] + 7 * numbers[4]  # phe's own homomorphic operations apply
    assert pair.private.decrypt(total) == 1 + 123456789 - 7 * 10**20


def test_fast_ciphertexts_are_distinct_for_equal_plaintexts() -> None:
    ciphertexts = encrypt([42] * 64)
    assert len(set(ciphertexts)) == 64
    assert decrypt_signed(ciphertexts[:2]) == [42, 42]


def test_a_fresh_encryptor_per_call_by_default() -> None:
    pair = keypair()
    first = paillier_bulk.encrypt_mantissas(pair.public, [3], processes=1)
    second = paillier_bulk.encrypt_mantissas(pair.public, [3], processes=1)
    assert first != second
    assert decrypt_signed(first + second) == [3, 3]


def test_hs_is_an_n_th_residue_and_fresh_per_encryptor() -> None:
    pair = keypair()
    first, second = paillier_bulk.Encryptor.create(pair.public), paillier_bulk.Encryptor.create(pair.public)
    assert first.hs != second.hs
    assert pair.private.raw_decrypt(first.hs) == 0  # an encryption of 0: hs^a changes no plaintext
    assert gmpy2.gcd(first.hs, pair.public.n) == 1


def test_fast_ciphertexts_pass_the_column_check() -> None:
    public = keypair().public
    column = paillier_bulk.encrypt_column(public, list(range(-20, 20)), 0, encryptor=encryptor(), processes=1)
    assert paillier.check_ciphertexts(public, column, "income") == []


@pytest.mark.parametrize("bits", [128, 200, 255], ids=["too-short", "under-256", "not-whole-bytes"])
def test_short_exponents_below_256_bits_are_refused(bits: int) -> None:
    with pytest.raises(ValueError, match="exponent_bits"):
        paillier_bulk.Encryptor.create(keypair().public, exponent_bits=bits)


def test_djn_exponent_length_also_decrypts() -> None:
    public = keypair().public
    djn = paillier_bulk.Encryptor.create(public, exponent_bits=public.bits // 2)
    assert decrypt_signed(paillier_bulk.encrypt_mantissas(public, [-9, 9], encryptor=djn, processes=1)) == [-9, 9]


def test_an_encryptor_of_another_key_is_refused() -> None:
    other = paillier_bulk.Encryptor.create(paillier.generate().public)
    with pytest.raises(ValueError, match="another key"):
        paillier_bulk.encrypt_mantissas(keypair().public, [1], encryptor=other)


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.decimals(-(10**9), 10**9, places=3)), max_size=8))
def test_encrypt_column_round_trips_with_nulls(values: list[object]) -> None:
    public = keypair().public
    column = paillier_bulk.encrypt_column(public, values, 3, encryptor=encryptor(), processes=1)  # type: ignore[arg-type]
    assert column.type == paillier.arrow_type(public)
    assert len(column) == len(values)
    assert column.null_count == sum(v is None for v in values)
    decrypted = [None if c is None else paillier.decode(keypair().private.raw_decrypt(c), 3, public) for c in paillier.from_arrow(column)]
    assert decrypted == values


def test_the_process_pool_encrypts_like_one_process() -> None:
    public = keypair().public
    values = list(range(-30, 30))
    pooled = paillier_bulk.encrypt_mantissas(public, values, encryptor=encryptor(), processes=2)
    assert decrypt_signed(pooled) == values
    column = paillier_bulk.encrypt_column(public, [1.5, None, -2.5], 1, encryptor=encryptor(), processes=2)
    assert [None if c is None else paillier.decode(keypair().private.raw_decrypt(c), 1, public) for c in paillier.from_arrow(column)] == [
        1.5,
        None,
        -2.5,
    ]


def test_processes_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="processes"):
        paillier_bulk.encrypt_mantissas(keypair().public, [1], processes=0)


# --- group sums -----------------------------------------------------------------------------------

ROWS = st.lists(st.tuples(st.one_of(st.none(), SIGNED), st.integers(0, 5)), max_size=24)


def encrypted_column(values: Sequence[int | None]) -> pa.Array:
    public = keypair().public
    present = iter(encrypt([v for v in values if v is not None]))
    return paillier.to_arrow(public, [None if v is None else next(present) for v in values])


def plaintext_sums(values: Sequence[int | None], groups: Sequence[int], n_groups: int) -> list[int]:
    sums = np.zeros(n_groups, dtype=np.int64)
    present = [i for i, v in enumerate(values) if v is not None]
    np.add.at(sums, np.array([groups[i] for i in present], dtype=np.int64), np.array([values[i] for i in present], dtype=np.int64))
    return [int(s) for s in sums]


@SETTINGS
@given(rows=ROWS, n_groups=st.integers(6, 8))
def test_group_sums_equal_numpy_and_the_reference(rows: list[tuple[int | None, int]], n_groups: int) -> None:
    public = keypair().public
    values, groups = [v for v, _ in rows], [g for _, g in rows]
    column = encrypted_column(values)
    sums = paillier_bulk.group_sums(public, column, np.array(groups, dtype=np.int64), n_groups, processes=1)
    assert sums == reference_group_sums(public, column.to_pylist(), groups, n_groups)
    assert decrypt_signed(sums) == plaintext_sums(values, groups, n_groups)  # groups 6.. are always empty: Enc(0)


def test_group_sums_read_chunked_sliced_and_variable_width_columns() -> None:
    public = keypair().public
    values = [5, None, -3, 8, 2, None, 11]
    groups = np.array([0, 1, 1, 0, 2, 2, 1], dtype=np.int64)
    column = encrypted_column(values)
    expected = paillier_bulk.group_sums(public, column, groups, 3, processes=1)
    assert decrypt_signed(expected) == [13, 8, 2]
    chunked = pa.chunked_array([column.slice(0, 3), column.slice(3, 0), column.slice(3)])
    assert paillier_bulk.group_sums(public, chunked, groups, 3, processes=1) == expected
    assert paillier_bulk.group_sums(public, column.cast(pa.binary()), groups, 3, processes=1) == expected
    sliced = column.slice(2, 4)
    assert paillier_bulk.group_sums(public, sliced, groups[2:6], 3, processes=1) == paillier_bulk.group_sums(
        public, paillier.to_arrow(public, paillier.from_arrow(sliced)), groups[2:6], 3, processes=1
    )


def test_group_sums_of_no_rows_are_encryptions_of_zero() -> None:
    public = keypair().public
    empty = pa.array([], paillier.arrow_type(public))
    assert paillier_bulk.group_sums(public, empty, np.array([], dtype=np.int64), 2) == [1, 1]
    assert paillier_bulk.group_sums(public, pa.chunked_array([], paillier.arrow_type(public)), np.array([], dtype=np.int64), 1) == [1]


def test_the_process_pool_sums_like_one_process() -> None:
    public = keypair().public
    values = [v if v % 7 else None for v in range(-40, 40)]
    column = encrypted_column(values)
    groups = np.arange(80, dtype=np.int64) % 5
    single = paillier_bulk.group_sums(public, column, groups, 6, processes=1)
    assert paillier_bulk.group_sums(public, column, groups, 6, processes=2) == single
    chunked = pa.chunked_array([column.slice(0, 33), column.slice(33, 40), column.slice(73)])
    assert paillier_bulk.group_sums(public, chunked, groups, 6, processes=2) == single
    assert decrypt_signed(single) == plaintext_sums(values, groups.tolist(), 6)


@pytest.mark.parametrize(
    ("case", "message"),
    [("length", "one group index"), ("negative-group", r"\[0, n_groups\)"), ("group-past-end", r"\[0, n_groups\)"), ("width", "bytes")],
    ids=["length", "negative-group", "group-past-end", "width"],
)
def test_group_sums_rejects(case: str, message: str) -> None:
    public = keypair().public
    column = encrypted_column([1, 2])
    groups = np.array([0, 1], dtype=np.int64)
    args = {
        "length": (column, groups[:1], 2),
        "negative-group": (column, np.array([0, -1], dtype=np.int64), 2),
        "group-past-end": (column, groups, 1),
        "width": (pa.array([b"\1" * 511, b"\1" * 511], pa.binary(511)), groups, 2),
    }[case]
    with pytest.raises(ValueError, match=message):
        paillier_bulk.group_sums(public, *args, processes=1)


# --- linear scores --------------------------------------------------------------------------------

FEATURES = st.lists(st.lists(st.one_of(st.just(0), SIGNED), min_size=3, max_size=3), min_size=1, max_size=4)


@SETTINGS
@given(weights=st.lists(SIGNED, min_size=3, max_size=3), intercept=SIGNED, features=FEATURES, as_mod_n=st.booleans())
def test_linear_scores_equal_numpy_and_the_reference(weights: list[int], intercept: int, features: list[list[int]], as_mod_n: bool) -> None:
    public = keypair().public
    *encrypted_weights, encrypted_intercept = encrypt([*weights, intercept])
    encoded = [[x % public.n for x in row] for row in features] if as_mod_n else features
    scores = paillier_bulk.linear_scores(public, encrypted_weights, encrypted_intercept, encoded, processes=1)
    assert scores == reference_scores(public, encrypted_weights, encrypted_intercept, encoded)
    expected = np.array(features, dtype=object) @ np.array(weights, dtype=object) + intercept
    assert decrypt_signed(scores) == expected.tolist()


def test_linear_scores_past_the_table_width_fall_back_to_powmod() -> None:
    public = keypair().public
    weights = encrypt([3, -2])
    intercept = encrypt([1])[0]
    features = [[2**300, -(2**200)], [5, -(2**129)], [public.max_int + 10, 0]]  # the last is in the overflow band
    scores = paillier_bulk.linear_scores(public, weights, intercept, features, processes=1)
    assert scores == reference_scores(public, weights, intercept, features)
    assert decrypt_signed(scores[:2]) == [1 + 3 * 2**300 + 2 * 2**200, 1 + 15 + 2 * 2**129]


def test_linear_scores_of_no_rows_and_zero_rows() -> None:
    public = keypair().public
    weights, intercept = encrypt([4, 5]), encrypt([6])[0]
    assert paillier_bulk.linear_scores(public, weights, intercept, []) == []
    assert paillier_bulk.linear_scores(public, weights, intercept, [[0, 0]], processes=1) == [intercept]


def test_the_process_pool_scores_like_one_process() -> None:
    public = keypair().public
    weights, intercept = encrypt([7, -11, 13]), encrypt([-100])[0]
    rng = np.random.default_rng(7)
    features = rng.integers(-(10**9), 10**9, size=(24, 3)).tolist()
    single = paillier_bulk.linear_scores(public, weights, intercept, features, processes=1)
    assert paillier_bulk.linear_scores(public, weights, intercept, features, processes=2) == single
    assert decrypt_signed(single[:3]) == (np.array(features[:3], dtype=object) @ np.array([7, -11, 13], dtype=object) - 100).tolist()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("row-length", "one feature per weight"),
        ("zero-weight", "weight 0 is not a ciphertext of this key"),
        ("weight-multiple-of-p", "weight 1 is not a ciphertext of this key"),
        ("intercept-too-large", "the intercept is not a ciphertext of this key"),
    ],
    ids=["row-length", "zero-weight", "weight-multiple-of-p", "intercept-too-large"],
)
def test_linear_scores_rejects(case: str, message: str) -> None:
    pair = keypair()
    weights, intercept = encrypt([1, 2]), encrypt([3])[0]
    features = [[1, 2]]
    if case == "row-length":
        features = [[1, 2], [3]]
    elif case == "zero-weight":
        weights = [0, weights[1]]
    elif case == "weight-multiple-of-p":
        weights = [weights[0], pair.private.p * 5]
    else:
        intercept = pair.public.nsquare + 1
    with pytest.raises(ValueError, match=message):
        paillier_bulk.linear_scores(pair.public, weights, intercept, features, processes=1)
