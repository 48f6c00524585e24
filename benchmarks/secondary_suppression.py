"""Secondary suppression at working size: protect and LP-audit a count table with all its margins, timed.

Tables: school x race x sex (79 x 3 x 2) and school x education (50 x 4), counts with every margin,
threshold 10 (ACRO's default): primaries are the cells below 10, zeros and margins included. The
data are real PUMS records (``../shared/data/smartnoise-sdk/PUMS_pid.csv``) resampled with a fixed
seed to the wanted size, with a synthetic, seeded ``school`` column (Pareto-sized schools, so that
many are small) because no real dataset here has a 79-value school dimension; race is PUMS race
folded to 3 groups (1, 2, other), education PUMS ``educ`` cut into 4 bands.

Checks, each independent of the code under test: every primary is suppressed, and every primary's
interval, solved again from scratch with ``scipy.optimize.linprog`` per cell (both directions) over
the published cells, the relations and the non-negative bound, is at least the threshold wide.
Targets: 79 x 3 x 2 in <= 5 s, 50 x 4 in <= 2 s. ``--smoke`` runs small tables in seconds.
Exits non-zero when a check or a target fails.

Baseline (the implementation before this benchmark: one ``linprog`` call per programme, dense
matrices, every suppressed cell re-audited each round), measured once on the shared 2-core machine:
50 x 4 took 40 s; 79 x 3 x 2 did not finish within 25 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linprog  # type: ignore[import-untyped]
from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.secondary import Key, protect, relations

PUMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "smartnoise-sdk" / "PUMS_pid.csv"
THRESHOLD = 10.0
BASELINE = {"79x3x2": "> 1500 s (did not finish)", "50x4": "40 s"}


@dataclass(frozen=True)
class Shape:
    name: str
    schools: int
    second: str  # "race_sex" (79 x 3 x 2) or "educ" (50 x 4)
    rows: int
    target: float  # seconds


FULL = (Shape("79x3x2", 79, "race_sex", 8000, 5.0), Shape("50x4", 50, "educ", 5000, 2.0))
SMOKE = (Shape("12x3x2", 12, "race_sex", 1200, 5.0), Shape("10x4", 10, "educ", 800, 2.0))


def table(shape: Shape, seed: int = 7) -> tuple[list[Key], list[float]]:
    """Counts over every combination of the dimensions' values, with every margin (long form, keys as in ``policies.secondary``)."""
    pums = pd.read_csv(PUMS)
    rng = np.random.default_rng(seed)
    sample = pums.sample(n=shape.rows, replace=True, random_state=seed).reset_index(drop=True)
    weights = rng.pareto(1.2, shape.schools) + 0.2
    dims = {"school": rng.choice(shape.schools, size=shape.rows, p=weights / weights.sum())}
    if shape.second == "race_sex":
        dims["race"] = np.minimum(sample["race"].to_numpy(), 3)
        dims["sex"] = sample["sex"].to_numpy()
    else:
        dims["educ"] = np.digitize(sample["educ"].to_numpy(), [9, 12, 14])
    frame = pd.DataFrame(dims)
    domains = [sorted(frame[name].unique().tolist()) for name in dims]
    keys: list[Key] = []
    values: list[float] = []
    for margin in itertools.product((False, True), repeat=len(domains)):
        kept = [name for name, summed in zip(dims, margin, strict=True) if not summed]
        counts = frame.groupby(kept).size().to_dict() if kept else {(): len(frame)}
        for combo in itertools.product(*[[None] if summed else d for d, summed in zip(domains, margin, strict=True)]):
            concrete = tuple(v for v in combo if v is not None)
            keys.append(tuple(None if v is None else (v,) for v in combo))
            values.append(float(counts.get(concrete[0] if len(concrete) == 1 else concrete, 0)))
    return keys, values


def independent_widths(keys: list[Key], values: list[float], suppressed: frozenset[int], cells: list[int]) -> dict[int, float]:
    """Each cell's interval width from scratch: linprog min and max over the suppressed cells, published cells fixed."""
    order = sorted(suppressed)
    position = {c: p for p, c in enumerate(order)}
    rows, cols, data, rhs = [], [], [], []
    for relation in relations(keys):
        row, constant = len(rhs), 0.0
        for cell, coefficient in [(relation.total, -1.0)] + [(p, 1.0) for p in relation.parts]:
            if cell in position:
                rows.append(row)
                cols.append(position[cell])
                data.append(coefficient)
            else:
                constant += coefficient * values[cell]
        rhs.append(-constant)
    a = csr_matrix((data, (rows, cols)), shape=(len(rhs), len(order)))
    widths = {}
    for cell in cells:
        objective = np.zeros(len(order))
        objective[position[cell]] = 1.0
        low = linprog(objective, A_eq=a, b_eq=rhs, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a, b_eq=rhs, bounds=(0, None), method="highs")
        if low.status != 0 or high.status not in (0, 3):
            raise SystemExit(f"independent audit failed on cell {cell}: {low.message} / {high.message}")
        widths[cell] = np.inf if high.status == 3 else float(-high.fun - low.fun)
    return widths


# --- checks and exit code (self-contained; to be switched to the shared benchmarks/checks.py) ---

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILURES.append(what)


def finish() -> int:
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


# --- the benchmark ---------------------------------------------------------------------------


def run(shape: Shape, smoke: bool) -> None:
    keys, values = table(shape)
    primary = [i for i, v in enumerate(values) if v < THRESHOLD]
    started = time.perf_counter()
    cpu = time.process_time()
    result = protect(keys, values, primary, THRESHOLD)
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{shape.name}: {len(keys)} cells, {len(primary)} primaries, {len(result.complements)} complements;"
        f" {elapsed:.2f} s wall, {used:.2f} s cpu (baseline {'-' if smoke else BASELINE[shape.name]})"
    )
    check(set(primary) <= result.suppressed, f"{shape.name}: every primary is suppressed")
    widths = independent_widths(keys, values, result.suppressed, primary)
    narrow = [c for c, w in widths.items() if w < THRESHOLD - 1e-6]
    check(not narrow, f"{shape.name}: every primary's interval is >= {THRESHOLD:g} wide (independent linprog, {len(widths)} cells)")
    check(elapsed <= shape.target, f"{shape.name}: {elapsed:.2f} s <= target {shape.target:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small tables, seconds")
    args = parser.parse_args()
    for shape in SMOKE if args.smoke else FULL:
        run(shape, args.smoke)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
