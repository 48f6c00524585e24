"""Output checking against ACRO: the same crosstab of sums with disclosure checks, over 1M seeded rows.

Data: a PUMS-like table (educ, race, income, pid) drawn column by column from the marginals of the
1,000-person PUMS sample with numpy seed 2024; pid is unique per row, so that ACRO (which counts
rows) and this sandbox (which counts privacy units) count the same things.

ACRO: ``ACRO(suppress=True).crosstab(educ, race, values=income, aggfunc="sum")``, which computes
the table and runs threshold, p-ratio, n-k dominance, zeros and missing checks (pandas).
Sandbox: the statistics job path without HTTP: ``jobs.stats.plan`` + ``run`` (DuckDB computes the
table and each cell's evidence) + ``policies.output_control.control`` (the rules).
Also compared: which cells each withholds.

    .venv/bin/python benchmarks/sdc_vs_acro.py [--rows 1000000]
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

from core.schema import DatasetMeta  # noqa: E402
from jobs.engine import DuckDBEngine  # noqa: E402
from jobs.stats import plan as plan_stats  # noqa: E402
from jobs.stats import run as run_stats  # noqa: E402
from policies.evidence import Output  # noqa: E402
from policies.model import Policy  # noqa: E402
from policies.output_control import control  # noqa: E402

REPEATS = 3
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


def run_acro(frame: pd.DataFrame) -> tuple[float, set[tuple[int, int]]]:
    from acro import ACRO

    logging.disable(logging.CRITICAL)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        acro = ACRO(suppress=True)
        start = time.perf_counter()
        table = acro.crosstab(frame.educ, frame.race, values=frame.income, aggfunc="sum")
        elapsed = time.perf_counter() - start
    present = set(frame.groupby(["educ", "race"]).size().index)  # ACRO also shows empty combinations, as NaN
    withheld = {(int(e), int(r)) for e in table.index for r in table.columns if (e, r) in present and pd.isna(table.loc[e, r])}
    return elapsed, withheld


def run_ours(table: pa.Table) -> tuple[float, set[tuple[int, int]]]:
    schemas = {"pums": DatasetMeta.model_validate(META).schema_only()}
    engine = DuckDBEngine()
    start = time.perf_counter()
    plan = plan_stats(SPEC, POLICY, schemas, unique_units=frozenset({"pums"}))  # each row its own unit, as ACRO assumes
    result = run_stats(plan, {"pums": table}, engine, POLICY.disclosure)
    controlled = control(result.table, [Output(n, a) for n, a in result.outputs], result.unit_columns, POLICY.disclosure)
    elapsed = time.perf_counter() - start
    released = controlled.released.to_pylist()
    name = result.outputs[0][0]
    withheld = {(row["educ"], row["race"]) for row in released if row[name] is None}
    return elapsed, withheld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    acro_times, our_times = [], []
    for _ in range(REPEATS):
        acro_time, acro_withheld = run_acro(frame)
        our_time, our_withheld = run_ours(table)
        acro_times.append(acro_time)
        our_times.append(our_time)
    a, o = statistics.median(acro_times), statistics.median(our_times)
    print(f"crosstab educ x race, sum(income), {args.rows:,} rows, median of {REPEATS}")
    print(f"  ACRO     {a:8.3f} s   withheld {len(acro_withheld)} cells")
    print(f"  sandbox  {o:8.3f} s   withheld {len(our_withheld)} cells")
    print(f"  speed-up {a / o:8.1f} x   (target >= 20x)")
    print(f"  same withheld cells: {acro_withheld == our_withheld}")
    if acro_withheld != our_withheld:
        print(f"    only ACRO: {sorted(acro_withheld - our_withheld)}\n    only sandbox: {sorted(our_withheld - acro_withheld)}")


if __name__ == "__main__":
    main()
