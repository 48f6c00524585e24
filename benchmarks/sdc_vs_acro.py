"""Output checking against ACRO: the same crosstab of sums with disclosure checks, over 1M seeded rows.

Data: a PUMS-like table (educ, race, income, pid) drawn column by column from the marginals of the
1,000-person PUMS sample with numpy seed 2024; pid is unique per row, so that ACRO (which counts
rows) and this sandbox (which counts privacy units) count the same things.

ACRO: ``ACRO(suppress=True).crosstab(educ, race, values=income, aggfunc="sum")``, which computes
the table and runs threshold, p-ratio, n-k dominance, zeros and missing checks (pandas).
Sandbox: the statistics job path without HTTP: ``jobs.stats.plan`` + ``run`` (DuckDB computes the
table and each cell's evidence) + ``policies.output_control.control`` (the rules).
Checked at every run (exit status 1 if any fails): on every repeat, the same withheld cells AND
the same released values as ACRO, cell by cell; at least one cell withheld (else the comparison
says nothing). Target (full size only): speed-up >= 20x.

    .venv/bin/python benchmarks/sdc_vs_acro.py [--rows 1000000]
    .venv/bin/python benchmarks/sdc_vs_acro.py --smoke        # 100,000 rows, one repeat
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.checks import Checks, add_smoke_flag  # noqa: E402
from core.schema import DatasetMeta  # noqa: E402
from jobs.engine import DuckDBEngine  # noqa: E402
from jobs.stats import plan as plan_stats  # noqa: E402
from jobs.stats import run as run_stats  # noqa: E402
from policies.evidence import Output  # noqa: E402
from policies.model import Policy  # noqa: E402
from policies.output_control import control  # noqa: E402

REPEATS = 3
SMOKE_ROWS = 100_000
SPEED_UP_TARGET = 20
Cell = tuple[int, int]
Cells = dict[Cell, float | None]  # (educ, race) -> released sum, None when withheld
META = {
    "name": "pums",
    "title": "seeded",
    "level": "重要",
    "privacy_unit": "pid",
    "columns": {
        "educ": {"role": "quasi_identifier", "type": "int"},
        "race": {"role": "quasi_identifier", "type": "int"},
        "income": {"role": "sensitive", "type": "int", "bounds": [0, 500000]},
        "pid": {"role": "identifier", "type": "int"},
    },
}
POLICY = Policy.model_validate(
    {
        "columns": {"pums": {"educ": "dimension", "race": "dimension", "income": "measure"}},
        "aggregates": ["count", "sum"],
        "job_kinds": ["stats"],
    }
)
SPEC = {"op": "crosstab", "dataset": "pums", "index": ["educ"], "columns": ["race"], "values": "income", "aggfunc": ["sum"]}


def make_frame(rows: int) -> pd.DataFrame:
    source = pd.read_csv(ROOT / "sandbox" / "demo" / "data" / "pums.csv")
    rng = np.random.default_rng(2024)
    frame = pd.DataFrame({name: rng.choice(source[name].to_numpy().astype(np.int64), size=rows) for name in ("educ", "race", "income")})
    # a few rare cells, so that the checks have something to find
    frame.loc[: rows // 100_000, "race"] = 7
    frame["pid"] = np.arange(1, rows + 1)
    return frame


def run_acro(frame: pd.DataFrame) -> tuple[float, Cells]:
    from acro import ACRO

    logging.disable(logging.CRITICAL)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        acro = ACRO(suppress=True)
        start = time.perf_counter()
        table = acro.crosstab(frame.educ, frame.race, values=frame.income, aggfunc="sum")
        elapsed = time.perf_counter() - start
    present = frame.groupby(["educ", "race"]).size().index  # ACRO also shows empty combinations, as NaN
    cells: Cells = {}
    for e, r in present:
        value = table.loc[e, r]
        cells[int(e), int(r)] = None if pd.isna(value) else float(value)
    return elapsed, cells


def run_ours(table: pa.Table) -> tuple[float, Cells]:
    schemas = {"pums": DatasetMeta.model_validate(META).schema_only()}
    engine = DuckDBEngine()
    start = time.perf_counter()
    plan = plan_stats(SPEC, POLICY, schemas, unique_units=frozenset({"pums"}))  # each row its own unit, as ACRO assumes
    result = run_stats(plan, {"pums": table}, engine, POLICY.disclosure)
    controlled = control(result.table, [Output(n, a) for n, a in result.outputs], result.unit_columns, POLICY.disclosure)
    elapsed = time.perf_counter() - start
    name = result.outputs[0][0]
    cells: Cells = {(row["educ"], row["race"]): None if row[name] is None else float(row[name]) for row in controlled.released.to_pylist()}
    return elapsed, cells


def withheld(cells: Cells) -> set[Cell]:
    return {cell for cell, value in cells.items() if value is None}


def compare(checks: Checks, repeat: int, acro: Cells, ours: Cells) -> None:
    """The same cells, the same withheld ones, and the same released values (sums of integers: exact)."""
    label = f"repeat {repeat + 1}"
    checks.check(f"{label}: the same cells as ACRO", set(acro) == set(ours), f"only ACRO {sorted(set(acro) - set(ours))}, "
                 f"only sandbox {sorted(set(ours) - set(acro))}")  # fmt: skip
    a, o = withheld(acro), withheld(ours)
    checks.check(f"{label}: the same withheld cells as ACRO ({len(a)})", a == o, f"only ACRO {sorted(a - o)}, only sandbox {sorted(o - a)}")
    checks.check(f"{label}: at least one cell withheld (else the comparison says nothing)", bool(a))
    differ = sorted(c for c in set(acro) & set(ours) if c not in a | o and acro[c] != ours[c])
    released = len(set(acro) - a)
    checks.check(f"{label}: the same released values as ACRO ({released} cells)", released > 0 and not differ, f"differ at {differ[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    add_smoke_flag(parser)
    args = parser.parse_args()
    rows, repeats = (SMOKE_ROWS, 1) if args.smoke else (args.rows, REPEATS)
    checks = Checks(args.smoke)
    frame = make_frame(rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    acro_times, our_times = [], []
    print(f"crosstab educ x race, sum(income), {rows:,} rows, median of {repeats}")
    for repeat in range(repeats):
        acro_time, acro_cells = run_acro(frame)
        our_time, our_cells = run_ours(table)
        acro_times.append(acro_time)
        our_times.append(our_time)
        compare(checks, repeat, acro_cells, our_cells)
    a, o = statistics.median(acro_times), statistics.median(our_times)
    print(f"  ACRO     {a:8.3f} s   withheld {len(withheld(acro_cells))} cells  (baseline)")
    print(f"  sandbox  {o:8.3f} s   withheld {len(withheld(our_cells))} cells")
    checks.at_least("speed-up over ACRO", a / o, SPEED_UP_TARGET, "x")
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
