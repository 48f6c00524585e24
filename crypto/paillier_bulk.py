"""Paillier over whole columns: encrypting, group-summing and scoring many values at once.

The functions take and return Arrow ``fixed_size_binary`` columns of ciphertexts (see
``crypto.paillier``) or Python integers; they are the kernels of ``he`` jobs and of provider-side
encryption, and the subject of ``benchmarks/he_throughput.py``. The arithmetic is in
``crypto.paillier_kernels``; large inputs are split into chunks over a process pool.

Encryption is Damgård–Jurik–Nielsen's short-exponent variant (I. Damgård, M. Jurik, J. B. Nielsen,
"A generalization of Paillier's public-key system with applications to electronic voting",
Int. J. Inf. Secur. 9(6), 2010), under the standard phe key: the encryptor draws a unit x mod n,
sets h = −x² mod n and hs = h^n mod n² once, and encrypts a mantissa m as
c = (1 + m n) · hs^a mod n² with a uniform in [0, 2^ℓ). Since hs^a = (h^a)^n is an n-th residue,
c is an ordinary Paillier ciphertext: phe's ``raw_decrypt`` decrypts it and the homomorphic
operations apply unchanged. hs^a costs about ℓ/8 multiplications mod n² from a fixed-base table,
against a 2048-bit exponent for the standard r^n.

Security assumption, precisely: c hides m (IND-CPA) under (1) the decisional composite
residuosity (DCR) assumption for n — a uniform n-th residue mod n² cannot be told from a uniform
unit mod n²; with a *uniform* exponent a ∈ [0, ord(hs)), hs^a is a uniform element of ⟨hs⟩, a
subgroup of the n-th residues, and plays the part of Paillier's r^n — and (2) the short-exponent
assumption on ⟨hs⟩: given n and hs, hs^a for a uniform ℓ-bit a cannot be told from a uniform
element of ⟨hs⟩. (2) goes beyond DCR; it is the assumption DJN's variant rests on. ⟨hs⟩ is
large (its order is a divisor of λ(n), typically within a small factor of it) and its order is
hidden (it needs the factors of n), so the best known attacks on the short exponent are
generic: Pollard's lambda / van Oorschot–Wiener parallel collision search, about 2^(ℓ/2)
multiplications mod n².

ℓ: DJN suggest ℓ = ⌈k/2⌉ for a k-bit n (1,024 bits here). We use ℓ = 2κ = 256 for κ = 128
(``EXPONENT_BITS``): the generic attacks then cost 2^128, above the ~112-bit strength of a
2048-bit modulus itself (NIST SP 800-57 part 1), so the exponent is not the weakest link; it is
4× cheaper than ℓ = 1,024. Pass an ``Encryptor`` with ``exponent_bits=1024`` for DJN's length.
Randomness comes from ``os.urandom``/``secrets``. Like any Paillier ciphertext, these protect
values from whoever lacks the private key; they do not hide their randomness from the key holder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from math import ceil

import gmpy2
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from crypto import paillier
from crypto.paillier import PublicKey
from crypto.paillier_kernels import (
    Scorer,
    ShortExponentEncryptor,
    available_cores,
    encrypt_chunk,
    group_products,
    init_encryptor,
    init_scorer,
    pool_map,
    score_chunk,
)

EXPONENT_BITS = 256  # ℓ = 2κ for κ = 128; see the module docstring
SCORE_TABLE_BITS = 128  # widest feature magnitude served by a table; wider ones use powmod
# Below these sizes one process beats a pool: starting one costs ~0.3 s (workers re-import the main
# module and build their tables), about 1,500 encryptions, 50,000 row products or 5,000 score terms.
POOL_MIN_VALUES = 5_000
POOL_MIN_ROWS = 200_000
POOL_MIN_TERMS = 50_000
CHUNKS_PER_PROCESS = 8  # small enough chunks to even out the load, large enough to pay their transfer

__all__ = ["EXPONENT_BITS", "Encryptor", "encrypt_column", "encrypt_mantissas", "group_sums", "linear_scores"]


class Encryptor(ShortExponentEncryptor):
    """The short-exponent encryptor for one public key; reuse it to encrypt several columns.

    ``Encryptor.create(public)`` draws a fresh hs (one exponentiation mod n²); the fixed-base table
    (about 4 MB for ℓ = 256) is built on first use, in each worker process for pooled calls.
    """

    __slots__ = ()

    @classmethod
    def create(cls, public: PublicKey, *, exponent_bits: int = EXPONENT_BITS) -> Encryptor:
        fresh = ShortExponentEncryptor.fresh(public.n, exponent_bits)
        return cls(fresh.n, fresh.hs, fresh.exponent_bits)


def _pool_size(processes: int | None, size: int, threshold: int) -> int:
    """How many worker processes to use: 1 means none. ``None`` uses every core above ``threshold``."""
    if processes is None:
        return available_cores() if size >= threshold else 1
    if processes < 1:
        raise ValueError("processes must be at least 1")
    return processes


def _chunk_bounds(size: int, processes: int) -> Iterator[tuple[int, int]]:
    step = max(1, ceil(size / (processes * CHUNKS_PER_PROCESS)))
    for start in range(0, size, step):
        yield start, min(size, start + step)


def _encrypt_blob(public: PublicKey, mantissas: Sequence[int], processes: int | None, encryptor: Encryptor | None) -> bytes | bytearray:
    encryptor = encryptor or Encryptor.create(public)
    if encryptor.n != public.n:
        raise ValueError("the encryptor belongs to another key")
    width = public.ciphertext_bytes
    workers = _pool_size(processes, len(mantissas), POOL_MIN_VALUES)
    if workers == 1:
        return encryptor.encrypt_blob(mantissas, width)
    chunks = ((mantissas[start:end], width) for start, end in _chunk_bounds(len(mantissas), workers))
    initargs = (encryptor.n, encryptor.hs, encryptor.exponent_bits)
    out = bytearray()  # appended chunk by chunk: the parts are never all held twice
    for part in pool_map(encrypt_chunk, chunks, processes=workers, initializer=init_encryptor, initargs=initargs):
        out += part
    return out


def encrypt_mantissas(
    public: PublicKey, mantissas: Sequence[int], *, processes: int | None = None, encryptor: Encryptor | None = None
) -> list[int]:
    """Encrypt encoded mantissas (``paillier.encode``; taken mod n) with the short-exponent encryptor.

    ``processes``: ``None`` uses one worker per core from ``POOL_MIN_VALUES`` values on, 1 stays in
    this process, k > 1 forces a pool of k. ``encryptor``: reuse one (and its hs); a fresh one by default.
    """
    width = public.ciphertext_bytes
    blob = _encrypt_blob(public, mantissas, processes, encryptor)
    return [int.from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]


def encrypt_column(
    public: PublicKey,
    values: Sequence[float | int | None],
    scale: int,
    *,
    processes: int | None = None,
    encryptor: Encryptor | None = None,
) -> pa.Array:
    """Encode at ``scale`` and encrypt each value; nulls stay null. Options as for ``encrypt_mantissas``."""
    width = public.ciphertext_bytes
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    blob = _encrypt_blob(public, [paillier.encode(v, scale, public) for v in values if v is not None], processes, encryptor)
    if present.all():
        return pa.FixedSizeBinaryArray.from_buffers(paillier.arrow_type(public), len(values), [None, pa.py_buffer(blob)])
    data = np.zeros((len(values), width), dtype=np.uint8)
    data[present] = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
    validity = pa.array(present, pa.bool_()).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(
        paillier.arrow_type(public), len(values), [validity, pa.py_buffer(data)], present.size - int(present.sum())
    )


def _row_blocks(
    column: pa.Array | pa.ChunkedArray, groups: NDArray[np.int64], width: int
) -> Iterator[tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """Per Arrow chunk: its non-null rows as a (rows, width) byte matrix, with their groups.

    The matrix is a view of the Arrow buffer when the chunk is ``fixed_size_binary`` without nulls
    (variable-width binary chunks are copied once); chunks are never concatenated.
    """
    offset = 0
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        part, offset = groups[offset : offset + len(chunk)], offset + len(chunk)
        if not len(chunk):
            continue
        if not pa.types.is_fixed_size_binary(chunk.type):
            try:
                chunk = pa.array(chunk.to_pylist(), pa.binary(width))  # noqa: PLW2901
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise ValueError(f"ciphertexts must be {width}-byte binary values for this key") from None
        if chunk.type.byte_width != width:
            raise ValueError(f"ciphertexts must be {width} bytes long for this key")
        data = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=(chunk.offset + len(chunk)) * width)
        matrix = data.reshape(-1, width)[chunk.offset :]
        if chunk.null_count:
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            matrix, part = matrix[valid], part[valid]
        yield matrix, part


def _flat(matrix: NDArray[np.uint8]) -> memoryview:
    return np.ascontiguousarray(matrix).reshape(-1).data


def group_sums(
    public: PublicKey,
    ciphertexts: pa.Array | pa.ChunkedArray,
    groups: NDArray[np.int64],
    n_groups: int,
    *,
    processes: int | None = None,
) -> list[int]:
    """Per group g in [0, n_groups): the product mod n² of its rows' ciphertexts, i.e. Enc(sum of the values).

    Null ciphertexts are skipped; a group with no value gets the trivial encryption of 0. The rows
    are read straight from the Arrow buffers; from ``POOL_MIN_ROWS`` rows on (``processes=None``),
    chunks of rows go to worker processes and their per-group products are multiplied here.
    """
    width = public.ciphertext_bytes
    if len(ciphertexts) != len(groups):
        raise ValueError("one group index per ciphertext")
    groups = np.asarray(groups, dtype=np.int64)
    if groups.size and (groups.min() < 0 or groups.max() >= n_groups):
        raise ValueError("group indices must lie in [0, n_groups)")
    nsq = public.nsquare
    blocks = _row_blocks(ciphertexts, groups, width)
    workers = _pool_size(processes, len(groups), POOL_MIN_ROWS)
    if workers == 1:
        partials: Iterable[list[int]] = (group_products(nsq, _flat(m), width, g.tolist(), n_groups) for m, g in blocks)
    else:
        step = max(1, ceil(len(groups) / (workers * CHUNKS_PER_PROCESS)))
        chunks = (
            (nsq, m[start : start + step].tobytes(), width, g[start : start + step].tolist(), n_groups)
            for m, g in blocks
            for start in range(0, len(g), step)
        )
        partials = pool_map(group_products, chunks, processes=workers)
    totals = [gmpy2.mpz(1)] * n_groups
    for partial in partials:
        totals = [t * p % nsq for t, p in zip(totals, partial, strict=True)]
    return [int(t) for t in totals]


def _check_unit(public: PublicKey, ciphertext: int, what: str) -> int:
    if not 0 < ciphertext < public.nsquare or gmpy2.gcd(ciphertext, public.n) != 1:
        raise ValueError(f"{what} is not a ciphertext of this key")
    return int(ciphertext)


def linear_scores(
    public: PublicKey,
    weights: Sequence[int],
    intercept: int,
    features: Sequence[Sequence[int]],
    *,
    processes: int | None = None,
) -> list[int]:
    """Enc(intercept) ⊕ Σ_j Enc(w_j) ⊗ x_ij for every row i of ``features`` (encoded integer features).

    Features are mantissas mod n (or signed integers); each weight ciphertext gets a fixed-base
    table (and one for its inverse when its column has negatives), since it is the base for every
    row. The result equals ``paillier.add``/``scalar_mul`` term by term, ciphertext for ciphertext.
    From ``POOL_MIN_TERMS`` rows × features on (``processes=None``), rows are scored in worker processes.
    """
    weights = [_check_unit(public, w, f"weight {j}") for j, w in enumerate(weights)]
    intercept = _check_unit(public, intercept, "the intercept")
    if any(len(row) != len(weights) for row in features):
        raise ValueError("one feature per weight")
    bits, negative = Scorer.plan(public.n, features, len(weights), SCORE_TABLE_BITS)
    args = (public.n, weights, intercept, bits, negative)
    workers = _pool_size(processes, len(features) * max(1, len(weights)), POOL_MIN_TERMS)
    if workers == 1:
        return Scorer(*args).score_rows(features)
    chunks = ((features[start:end],) for start, end in _chunk_bounds(len(features), workers))
    return [score for part in pool_map(score_chunk, chunks, processes=workers, initializer=init_scorer, initargs=args) for score in part]
