"""Paillier over whole columns: encrypting, group-summing and scoring many values at once.

The functions take and return Arrow ``fixed_size_binary`` columns of ciphertexts (see
``crypto.paillier``) or Python integers; they are the kernels of ``he`` jobs and of provider-side
encryption, and the subject of ``benchmarks/he_throughput.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from crypto import paillier
from crypto.paillier import PublicKey


def encrypt_mantissas(public: PublicKey, mantissas: Sequence[int]) -> list[int]:
    """Encrypt encoded mantissas (``paillier.encode``) with the standard scheme."""
    return [paillier.encrypt(public, m) for m in mantissas]


def encrypt_column(public: PublicKey, values: Sequence[float | int | None], scale: int) -> pa.Array:
    """Encode at ``scale`` and encrypt each value; nulls stay null."""
    present = [v for v in values if v is not None]
    encrypted = iter(encrypt_mantissas(public, [paillier.encode(v, scale, public) for v in present]))
    out = [None if v is None else next(encrypted) for v in values]
    return paillier.to_arrow(public, out)


def group_sums(public: PublicKey, ciphertexts: pa.Array | pa.ChunkedArray, groups: NDArray[np.int64], n_groups: int) -> list[int]:
    """Per group g in [0, n_groups): the product mod n² of its rows' ciphertexts, i.e. Enc(sum of the values).

    Null ciphertexts are skipped; a group with no value gets the trivial encryption of 0.
    """
    nsq = gmpy2.mpz(public.nsquare)
    sums = [gmpy2.mpz(1)] * n_groups
    values = ciphertexts.to_pylist()
    if len(values) != len(groups):
        raise ValueError("one group index per ciphertext")
    for value, group in zip(values, groups.tolist(), strict=True):
        if value is not None:
            sums[group] = gmpy2.f_mod(gmpy2.mul(sums[group], gmpy2.mpz(int.from_bytes(value, "big"))), nsq)
    return [int(s) for s in sums]


def linear_scores(public: PublicKey, weights: Sequence[int], intercept: int, features: Sequence[Sequence[int]]) -> list[int]:
    """Enc(intercept) ⊕ Σ_j Enc(w_j) ⊗ x_ij for every row i of ``features`` (encoded integer features)."""
    scores = []
    for row in features:
        if len(row) != len(weights):
            raise ValueError("one feature per weight")
        acc = intercept
        for weight, x in zip(weights, row, strict=True):
            if x:
                acc = paillier.add(public, acc, paillier.scalar_mul(public, weight, x))
        scores.append(acc)
    return scores
