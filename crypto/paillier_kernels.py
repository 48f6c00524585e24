"""The arithmetic of bulk Paillier, in plain gmpy2: fixed-base tables, the short-exponent encryptor,
per-group products, linear scores, and the process pool that runs them on chunks.

No Arrow, numpy or phe here, so that pool workers import nothing heavy. The entry points, their
contracts and the security argument of the encryptor are in ``crypto.paillier_bulk``.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import gmpy2

Mpz = Any  # gmpy2.mpz has no type stubs
R = TypeVar("R")

DIGIT_BITS = 8  # exponents are read a byte at a time: a table row holds base^(j·256^i) for j < 256
DIGITS = 1 << DIGIT_BITS
MIN_EXPONENT_BITS = 256  # 2κ for κ = 128: see ``crypto.paillier_bulk`` for the argument
_ONE = gmpy2.mpz(1)


class FixedBase:
    """``acc · base^e mod m`` for 0 <= e < 2^bits, from a table of ``base^(j·256^i) mod m``.

    Building costs 255 multiplications per byte of exponent (kept in memory: 256 values of m's
    size per byte); each power then costs one multiplication per non-zero byte of the exponent —
    32 for a 256-bit exponent, against about 300 for square-and-multiply.
    """

    __slots__ = ("modulus", "rows")

    def __init__(self, base: int, modulus: int, bits: int) -> None:
        m = gmpy2.mpz(modulus)
        step = gmpy2.mpz(base) % m
        rows: list[list[Mpz]] = []
        for _ in range((bits + DIGIT_BITS - 1) // DIGIT_BITS):
            row = [_ONE, step]
            for _ in range(DIGITS - 2):
                row.append(row[-1] * step % m)
            rows.append(row)
            step = row[-1] * step % m  # base^(256^(i+1))
        self.rows = rows
        self.modulus = m

    @property
    def bits(self) -> int:
        return len(self.rows) * DIGIT_BITS

    def times_digits(self, acc: Mpz, digits: bytes) -> Mpz:
        """``acc · base^e mod m`` where ``digits`` is e in little-endian bytes (at most ``bits / 8`` of them)."""
        m = self.modulus
        for row, digit in zip(self.rows, digits, strict=False):
            if digit:
                acc = acc * row[digit] % m
        return acc

    def times_power(self, acc: Mpz, exponent: int) -> Mpz:
        """``acc · base^exponent mod m``; an exponent of more than ``bits`` bits is an ``OverflowError``."""
        return self.times_digits(acc, exponent.to_bytes(len(self.rows), "little"))


class ShortExponentEncryptor:
    """Damgård–Jurik–Nielsen encryption under a standard Paillier key (g = n + 1).

    ``hs = (−x²)^n mod n²`` for a random unit x (``fresh``); a mantissa m encrypts to
    ``(1 + m n) · hs^a mod n²`` with a drawn uniformly from [0, 2^exponent_bits) by ``os.urandom``.
    hs^a = ((−x²)^a)^n is an n-th residue, so the result is an ordinary Paillier ciphertext that
    phe's ``raw_decrypt`` decrypts. hs is not secret (DJN publish it with the key); x is dropped.
    """

    __slots__ = ("_table", "exponent_bits", "hs", "n")

    def __init__(self, n: int, hs: int, exponent_bits: int) -> None:
        if exponent_bits < MIN_EXPONENT_BITS or exponent_bits % DIGIT_BITS:
            raise ValueError(f"exponent_bits must be a multiple of {DIGIT_BITS} of at least {MIN_EXPONENT_BITS}")
        if not 1 < hs < n * n or gmpy2.gcd(hs, n) != 1:
            raise ValueError("hs must be a unit modulo n²")
        self.n, self.hs, self.exponent_bits = int(n), int(hs), exponent_bits
        self._table: FixedBase | None = None

    @classmethod
    def fresh(cls, n: int, exponent_bits: int) -> ShortExponentEncryptor:
        """A new hs from a random x (``secrets``): one exponentiation mod n²."""
        nsq = gmpy2.mpz(n) * n
        while True:
            x = secrets.randbelow(n)
            if x > 1 and gmpy2.gcd(x, n) == 1:
                break
        h = (-x * x) % n
        return cls(n, int(gmpy2.powmod(h, n, nsq)), exponent_bits)

    @property
    def table(self) -> FixedBase:
        """The fixed-base table of hs, built on first use (about 8,000 multiplications for 256 bits)."""
        if self._table is None:
            self._table = FixedBase(self.hs, self.n * self.n, self.exponent_bits)
        return self._table

    def encrypt_blob(self, mantissas: Sequence[int], width: int) -> bytes:
        """The ciphertexts of ``mantissas`` (taken mod n) as big-endian ``width``-byte values, concatenated."""
        n = gmpy2.mpz(self.n)
        nsq = n * n
        table = self.table
        step = self.exponent_bits // 8
        noise = os.urandom(step * len(mantissas))  # the exponents a, one ``step``-byte slice each
        out = bytearray()
        for i, mantissa in enumerate(mantissas):
            z = table.times_digits(_ONE, noise[i * step : (i + 1) * step])
            # (1 + m n) z = z + n (m z mod n)  (mod n²): one product mod n instead of one mod n²
            c = (z + n * (mantissa % n * z % n)) % nsq
            out += int(c).to_bytes(width, "big")  # (mpz.to_bytes needs gmpy2 2.2; requirements allow 2.1)
        return bytes(out)


def group_products(nsquare: int, blob: bytes | memoryview, width: int, groups: Sequence[int], n_groups: int) -> list[int]:
    """Per group, the product mod n² of the ``width``-byte ciphertexts in ``blob`` whose row ``groups`` names.

    Row i of ``blob`` (bytes, or a flat memoryview of them) belongs to group ``groups[i]``; a group
    without rows gets 1 (the trivial Enc(0)).
    """
    m = gmpy2.mpz(nsquare)
    mpz, from_bytes, view = gmpy2.mpz, int.from_bytes, memoryview(blob)
    acc = [_ONE] * n_groups
    for i, group in enumerate(groups):
        acc[group] = acc[group] * mpz(from_bytes(view[i * width : (i + 1) * width], "big")) % m
    return [int(value) for value in acc]


class Scorer:
    """``intercept · Π_j w_j^{x_j} mod n²`` for rows x of signed feature magnitudes.

    A feature x (an encoded mantissa mod n) counts as −(n − x) when x > n − max_int, as in
    ``paillier.scalar_mul``, so both give the same ciphertext. Each weight has a fixed-base table
    as wide as the largest magnitude of its column (up to ``table_bits``), and one for its inverse
    when the column has negatives; a larger magnitude falls back to ``powmod``.
    """

    @staticmethod
    def plan(n: int, rows: Sequence[Sequence[int]], n_features: int, table_bits: int) -> tuple[list[int], list[bool]]:
        """Per feature column: the table width in bits (whole bytes, at most ``table_bits``) and whether it has negatives."""
        negative_from = n - n // 3
        widest, negative = [0] * n_features, [False] * n_features
        for row in rows:
            for j, feature in enumerate(row):
                x = int(feature) % n
                if x > negative_from:
                    x, negative[j] = n - x, True
                widest[j] = max(widest[j], x.bit_length())
        step = DIGIT_BITS
        return [min(-(-b // step) * step, table_bits) for b in widest], negative

    def __init__(self, n: int, weights: Sequence[int], intercept: int, bits: Sequence[int], negative: Sequence[bool]) -> None:
        self.n = gmpy2.mpz(n)
        self.nsquare = self.n * self.n
        self.max_int = self.n // 3
        self.intercept = gmpy2.mpz(intercept)
        self.weights = [gmpy2.mpz(w) for w in weights]
        self.inverses = [gmpy2.invert(w, self.nsquare) if neg else None for w, neg in zip(self.weights, negative, strict=True)]
        self.positive_tables = [FixedBase(w, self.nsquare, b) if b else None for w, b in zip(self.weights, bits, strict=True)]
        self.negative_tables = [
            FixedBase(inv, self.nsquare, b) if inv is not None and b else None for inv, b in zip(self.inverses, bits, strict=True)
        ]

    def score(self, row: Sequence[int]) -> int:
        acc = self.intercept
        n, nsq, negative_from = self.n, self.nsquare, self.n - self.max_int
        for j, feature in enumerate(row):
            x = int(feature) % n
            if not x:
                continue
            if x > negative_from:
                magnitude, table, base = n - x, self.negative_tables[j], self.inverses[j]
            else:
                magnitude, table, base = x, self.positive_tables[j], self.weights[j]
            if table is not None and magnitude.bit_length() <= table.bits:
                acc = table.times_power(acc, int(magnitude))
            else:
                acc = acc * gmpy2.powmod(base, magnitude, nsq) % nsq
        return int(acc)

    def score_rows(self, rows: Sequence[Sequence[int]]) -> list[int]:
        return [self.score(row) for row in rows]


# --- the process pool -------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}  # per worker process: the encryptor or scorer built once by the pool's initializer


def init_encryptor(n: int, hs: int, exponent_bits: int) -> None:
    _WORKER["encryptor"] = ShortExponentEncryptor(n, hs, exponent_bits)


def encrypt_chunk(mantissas: Sequence[int], width: int) -> bytes:
    encryptor: ShortExponentEncryptor = _WORKER["encryptor"]
    return encryptor.encrypt_blob(mantissas, width)


def init_scorer(n: int, weights: Sequence[int], intercept: int, bits: Sequence[int], negative: Sequence[bool]) -> None:
    _WORKER["scorer"] = Scorer(n, weights, intercept, bits, negative)


def score_chunk(rows: Sequence[Sequence[int]]) -> list[int]:
    scorer: Scorer = _WORKER["scorer"]
    return scorer.score_rows(rows)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_map(
    function: Callable[..., R],
    chunks: Iterable[tuple[Any, ...]],
    *,
    processes: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[R]:
    """``function(*chunk)`` for each chunk in worker processes, results in chunk order.

    At most two chunks per process are in flight, so a large input is never copied whole into the
    pool's queue. Workers start from a fork server, not by forking this process: forking a process
    that runs threads (Flask, DuckDB) can deadlock the child.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(processes, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(function, *chunk))
                if len(pending) >= 2 * processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
