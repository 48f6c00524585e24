"""Paillier throughput: phe's standard encryption against the short-exponent bulk encryptor, and the he kernels at full size.

On one 2048-bit key (``crypto.paillier.generate``), in one run:
  (a) encryption, per value: phe's ``public_key.encrypt(int)`` (the baseline), gmpy2's
      ``powmod(r, n, n²)`` alone (the floor of the standard scheme: its one exponentiation, no
      encoding, no product), and ``paillier_bulk.encrypt_mantissas`` (short exponent, ℓ = 256) in
      one process and over the process pool; values/s and ratios against phe. The bulk times
      include drawing hs and building the table, once per call. Also ℓ = 1,024 (DJN's own length).
  (b) group sums: ``--rows`` (1,000,000) seeded amounts with 2 decimals (numpy ``default_rng(2024)``,
      uniform in [−1,000, 100,000), group = uniform in [0, 100)). Setup, timed and reported:
      ``paillier_bulk.encrypt_column`` encrypts every row afresh (pool), and the column is written
      to an Arrow IPC file. Timed: memory-map the file, read the column, ``group_sums`` into 100
      groups, over the pool and in one process. Verified: each group's decrypted sum equals
      numpy's sum of the plaintext mantissas, and both runs give the same ciphertexts.
  (c) linear scores: ``--entities`` (10,000) × 10 features, signed mantissas below 10^12 in
      magnitude (scale 6 for values below 10^6), 10 signed weights and an intercept encrypted by
      the analyst. Timed: ``linear_scores`` over the pool and in one process (same ciphertexts).
      Verified: ``--check`` (500) entities decrypted against the exact plaintext computation.
The load average is printed before and after: the machine may be shared.

Checked at every run (exit status 1 if any fails): bulk ciphertexts decrypt to their values; every
group sum and every checked score decrypts to the plaintext computation; pool and one process give
the same ciphertexts. Targets (full size only; scaled linearly with --rows and --entities):
bulk encryption >= 10x phe per core; group sums of 1M rows <= 20 s; scores of 10,000 entities <= 10 s.

    .venv/bin/python benchmarks/he_throughput.py
    .venv/bin/python benchmarks/he_throughput.py --smoke     # a few thousand values: seconds
    .venv/bin/python benchmarks/he_throughput.py --rows 100000 --entities 1000 --samples 50
    .venv/bin/python benchmarks/he_throughput.py --parts ac      # skip the 1M-row setup
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gmpy2
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.checks import Checks, add_smoke_flag  # noqa: E402
from crypto import paillier, paillier_bulk  # noqa: E402
from crypto.paillier_kernels import available_cores  # noqa: E402

T = TypeVar("T")
SCALE = 2
N_GROUPS = 100
N_FEATURES = 10
PER_CORE_TARGET = 10  # bulk encryption vs phe, per core
SUMS_TARGET = (1_000_000, 20.0)  # rows, seconds on 2 cores
SCORES_TARGET = (10_000, 10.0)  # entities, seconds
SMOKE = {"samples": 20, "bulk": 400, "rows": 4_000, "entities": 200, "check": 50}


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def encryption(pair: paillier.KeyPair, samples: int, bulk: int, processes: int, checks: Checks) -> None:
    public, private = pair.public, pair.private
    before = load()
    values = list(range(1, samples + 1))
    phe_key = public.phe
    phe_time, _ = timed(lambda: [phe_key.encrypt(v) for v in values])
    n = gmpy2.mpz(public.n)
    nsq = n * n
    randoms = [gmpy2.mpz(secrets.randbelow(public.n)) for _ in values]
    floor_time, _ = timed(lambda: [gmpy2.powmod(r, n, nsq) for r in randoms])
    mantissas = list(range(bulk))
    single_time, single = timed(paillier_bulk.encrypt_mantissas, public, mantissas, processes=1)
    pool_time, pooled = timed(paillier_bulk.encrypt_mantissas, public, mantissas, processes=processes)
    djn_time, djn = timed(
        paillier_bulk.encrypt_mantissas, public, mantissas[: bulk // 4], processes=1,
        encryptor=paillier_bulk.Encryptor.create(public, exponent_bits=public.bits // 2),
    )  # fmt: skip
    checked = [0, 1, bulk // 2, bulk - 1]
    ok = all(private.raw_decrypt(c[i]) == i for c in (single, pooled) for i in checked) and private.raw_decrypt(djn[-1]) == bulk // 4 - 1
    base = samples / phe_time
    rows = [
        ("phe encrypt (baseline)", samples, phe_time, 1),
        ("gmpy2 powmod(r, n, n²) (floor)", samples, floor_time, 1),
        ("bulk, 1 process, ℓ=256", bulk, single_time, 1),
        (f"bulk, pool of {processes}, ℓ=256", bulk, pool_time, processes),
        ("bulk, 1 process, ℓ=1024 (DJN)", bulk // 4, djn_time, 1),
    ]
    print(f"(a) encryption, 2048-bit key ({processes} cores; load average before: {before})")
    print(f"  {'':34}{'values':>9}{'ms/value':>10}{'values/s':>10}{'vs phe':>9}{'per core':>10}")
    for name, count, seconds, cores in rows:
        rate = count / seconds
        print(f"  {name:34}{count:>9,}{1000 / rate:>10.3f}{rate:>10,.0f}{rate / base:>8.1f}x{rate / base / cores:>9.1f}x")
    checks.check("(a) bulk ciphertexts (1 process, pool, l=1024) decrypt to their values with phe's raw_decrypt", ok)
    checks.at_least("(a) bulk encryption, 1 process, vs phe", bulk / single_time / base, PER_CORE_TARGET, "x per core")
    print()


def group_sums(pair: paillier.KeyPair, rows: int, processes: int, checks: Checks) -> None:
    public, private = pair.public, pair.private
    rng = np.random.default_rng(2024)
    cents = rng.integers(-100_000, 10_000_000, size=rows)
    groups = rng.integers(0, N_GROUPS, size=rows)
    amounts = (cents / 100).tolist()  # the provider's values: repr(float) of a cent amount is exact
    encrypt_time, column = timed(paillier_bulk.encrypt_column, public, amounts, SCALE, processes=processes)
    del amounts
    with tempfile.TemporaryDirectory(prefix="he-bench-") as tmp:
        path = Path(tmp) / "incomes.arrow"
        table = pa.table({"income": column, "grp": groups})
        write_time, _ = timed(_write, table, path)
        del table, column

        def read_and_sum(procs: int) -> list[int]:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
                return paillier_bulk.group_sums(public, table["income"], table["grp"].to_numpy(), N_GROUPS, processes=procs)

        before = load()
        pool_time, pooled = timed(read_and_sum, processes)
        single_time, single = timed(read_and_sum, 1)
    expected = np.zeros(N_GROUPS, dtype=np.int64)
    np.add.at(expected, groups, cents)
    decrypt_time, decrypted = timed(lambda: [paillier.signed(private.raw_decrypt(c), public) for c in pooled])
    print(f"(b) group sums: {rows:,} rows into {N_GROUPS} groups (load average before the timed sums: {before})")
    print(f"  setup: encrypt_column (pool of {processes}) {encrypt_time:8.2f} s   ({rows / encrypt_time:,.0f} values/s)")
    print(f"  setup: write Arrow IPC file             {write_time:8.2f} s")
    print(f"  read + group_sums, pool of {processes}           {pool_time:8.2f} s")
    print(f"  read + group_sums, 1 process            {single_time:8.2f} s")
    print(f"  decrypt {N_GROUPS} sums                         {decrypt_time:8.2f} s")
    checks.check(f"(b) all {N_GROUPS} decrypted group sums equal numpy's sums of the plaintext", decrypted == expected.tolist())
    checks.check("(b) pool and one process give the same ciphertexts", pooled == single)
    checks.at_most(f"(b) read + group_sums of {rows:,} rows, pool of {processes}", pool_time, SUMS_TARGET[1] * rows / SUMS_TARGET[0], " s")
    print()


def _write(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def scores(pair: paillier.KeyPair, entities: int, check: int, processes: int, checks: Checks) -> None:
    public, private = pair.public, pair.private
    rng = np.random.default_rng(2024)
    weights = rng.integers(-(10**6), 10**6, size=N_FEATURES)
    intercept = int(rng.integers(-(10**12), 10**12))
    features = rng.integers(-(10**12), 10**12, size=(entities, N_FEATURES))
    features[rng.random(size=features.shape) < 0.1] = 0  # some zero features, as in real data
    encrypted = paillier_bulk.encrypt_mantissas(public, [int(w) for w in weights] + [intercept], processes=1)
    rows = features.tolist()
    before = load()
    pool_time, pooled = timed(paillier_bulk.linear_scores, public, encrypted[:-1], encrypted[-1], rows, processes=processes)
    single_time, single = timed(paillier_bulk.linear_scores, public, encrypted[:-1], encrypted[-1], rows, processes=1)
    sample = np.random.default_rng(1).choice(entities, size=min(check, entities), replace=False)
    exact = features.astype(object) @ weights.astype(object) + intercept
    ok = all(paillier.signed(private.raw_decrypt(pooled[i]), public) == exact[i] for i in sample)
    print(f"(c) linear scores: {entities:,} entities x {N_FEATURES} features (load average before: {before})")
    print(f"  linear_scores, pool of {processes}              {pool_time:8.2f} s")
    print(f"  linear_scores, 1 process               {single_time:8.2f} s")
    checks.check(f"(c) {len(sample)} decrypted scores equal the plaintext computation", ok)
    checks.check("(c) pool and one process give the same ciphertexts", pooled == single)
    bound = SCORES_TARGET[1] * entities / SCORES_TARGET[0]
    checks.at_most(f"(c) linear_scores of {entities:,} entities, pool of {processes}", pool_time, bound, " s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="values encrypted with phe and with raw powmod")
    parser.add_argument("--bulk", type=int, default=20_000, help="values encrypted with the bulk encryptor")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the group-sum column")
    parser.add_argument("--entities", type=int, default=10_000, help="entities scored")
    parser.add_argument("--check", type=int, default=500, help="scores decrypted to verify")
    parser.add_argument("--processes", type=int, default=available_cores(), help="pool size (default: the cores available)")
    parser.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. 'ac' (default: all)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    checks = Checks(args.smoke)
    print(f"load average (1/5/15 min) at start: {load()}   cores: {available_cores()}\n")
    pair = paillier.generate(2048)
    if "a" in args.parts:
        encryption(pair, args.samples, args.bulk, args.processes, checks)
    if "b" in args.parts:
        group_sums(pair, args.rows, args.processes, checks)
    if "c" in args.parts:
        scores(pair, args.entities, args.check, args.processes, checks)
    print(f"\nload average at end: {load()}")
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
