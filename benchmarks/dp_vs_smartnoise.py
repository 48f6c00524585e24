"""Differentially private query answers: the sandbox's DP path against SmartNoise SQL, for error and speed.

SmartNoise SQL pins opendp<0.15 and the sandbox uses opendp 0.16, so SmartNoise runs in its own
virtualenv (``benchmarks/smartnoise_env.sh``, default ``/tmp/sandbox-smartnoise-venv``, or
``$SMARTNOISE_VENV``). This script never imports ``snsql``: it runs ``smartnoise_side.py`` with that
venv's python, exchanging JSON (queries, epsilon, data path, runs) through files.

The sandbox side is called without HTTP, the way the worker does it (``sandbox.runtime.dp_answers``):
``jobs.query.validate`` -> ``jobs.query.dp.plan_dp`` -> ``DuckDBEngine(prepare_next=True).run(plan.sql, {"pums": t})``
-> ``jobs.query.dp.answer(plan, cells, Epsilon(1), max_rows=1)``.

Error: PUMS (1,000 persons, ``PUMS_pid.csv``), pid the privacy unit with one row each, income
bounds [0, 500000]. Each query at epsilon = 1, ``--runs`` runs (200), mean absolute error over the
cells both release, against the exact answer. SmartNoise gets the sandbox's contribution
assumption: pid its private id, one row per person known in advance (``max_ids: 1``,
``sample_max_ids: False``: no reservoir sample, as the sandbox takes max_rows = 1 from the counts);
``censor_dims: False`` (every group in the data is released), ``clamp_columns: True`` (income
clamped to its bounds, as the sandbox does), ``clamp_counts: False`` (see ``smartnoise_side.metadata``).
The sandbox releases every cell of the declared domains; PUMS has every race (1..6) and education
(1..16) value, so the common cells are all groups in the data.

SmartNoise spends the query's epsilon on *each* of its mechanisms: ``AVG`` is ``SUM / COUNT``, so
``Privacy(epsilon=1)`` costs epsilon = 2 (``get_privacy_cost``), while the sandbox spends epsilon = 1
on one release of each cell's two sums, of ``income - lower`` and of ``upper - income``
(``policies.dp.noisy_means``). The AVG query is therefore also run with SmartNoise at epsilon = 0.5
(total cost 1, equal to the sandbox's).

SmartNoise SQL 1.0.10 has no median: ``MEDIAN`` does not parse and ``PERCENTILE_CONT(income)``
parses but its rewriter refuses it ("We don't know how to rewrite aggregate function"); the script
checks that again at every run. What it can do is a DP histogram: ``COUNT(*)`` by sex and
``FLOOR(income / step)``, with ``step`` the spacing of the sandbox's 1,000 median candidates over
[0, 500000] (``policies.dp.QUANTILE_CANDIDATES``), at the same epsilon (its cost is 1: the bins are disjoint). The SmartNoise median is
read off that histogram by post-processing: negative counts set to 0, then linear interpolation
within the bin where the cumulative count passes half the total. The sandbox answers
``MEDIAN(income)`` with OpenDP's exponential mechanism over those 1,000 candidates.

Timing: a seeded PUMS-like table of ``--rows`` (1,000,000) rows: each of age, sex, educ, race,
income, married drawn independently (with replacement) from its PUMS column (numpy
``default_rng(2024)``), pid = 1..N unique. Sandbox: median of ``--repeats`` (7) full DP answers
(validate + plan + DuckDB + noise) per query, split into the engine's share (DuckDB computing the
exact cells) and the mechanism's (the noise); each run's DuckDB database is fresh, made in the
background after the previous run as the worker's are. SmartNoise: reader setup
(``snsql.from_connection`` over the in-memory DataFrame, which its PandasReader copies into an
in-memory SQLite database) once, then median of ``--sn-repeats`` (3) ``reader.execute`` per query,
split into its engine's share (its reader's ``_execute_ast``: SQLite computing the exact aggregates)
and the rest (parse, rewrite, noise, post-processing).

Checked at every run (exit status 1 if any fails): every sandbox count and sum is within 25 of its
calibrated Laplace scales of the exact answer (a miss has probability e^-25 per value); at least 90%
of its values are within their stated 95% bound (``bound95``; for the median, the rank score within
``rank_bound95`` of the best candidate's), and every median is one of the candidates; SmartNoise
refuses its median forms; SmartNoise's count error matches sensitivity 1 (mean absolute error within
[0.6, 1.4] of 1/epsilon: one row per person, the same assumption as ours); the timing answers have
every cell of the domain. Targets (full size only): MAE ratio <= 1, speed-up >= 20x.

    bash benchmarks/smartnoise_env.sh && .venv/bin/python benchmarks/dp_vs_smartnoise.py [--timing-only]
    .venv/bin/python benchmarks/dp_vs_smartnoise.py --smoke     # 20 runs, 20,000 rows, 2 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import dp_checks  # noqa: E402
from benchmarks.checks import Checks, add_smoke_flag  # noqa: E402
from core.schema import DatasetMeta, DatasetSchema  # noqa: E402
from core.values import JobKind  # noqa: E402
from jobs.engine import DuckDBEngine  # noqa: E402
from jobs.query import dp as query_dp  # noqa: E402
from jobs.query.validate import validate  # noqa: E402
from policies.budget import Epsilon  # noqa: E402
from policies.dp import QUANTILE_CANDIDATES, NoisyQuantile, NoisyValue  # noqa: E402
from policies.model import Aggregate, ColumnUse, DPSettings, Policy  # noqa: E402
from sandbox.demo.seed import PUMS_META  # noqa: E402

PUMS_CSV = ROOT / "sandbox" / "demo" / "data" / "pums.csv"  # PUMS_pid.csv of smartnoise-sdk, as shipped with the demo
# outside the repository on purpose (.gitignore does not cover a venv under benchmarks/)
VENV = Path(os.environ.get("SMARTNOISE_VENV", "/tmp/sandbox-smartnoise-venv"))  # noqa: S108
EPSILON = 1.0
MAX_ROWS = 1
SMOKE_RUNS, SMOKE_ROWS = 20, 20_000
SPEED_UP_TARGET = 20
INCOME = (0, 500_000)
STEP = (INCOME[1] - INCOME[0]) / (QUANTILE_CANDIDATES - 1)  # the spacing of the median's candidates; SmartNoise's histogram bin
COARSE_STEP = (INCOME[1] - INCOME[0]) / 99  # SmartNoise's histogram with 10x wider bins, in case that suits it better

# name -> (sandbox SQL, SmartNoise SQL, group key, aggregate column)
QUERIES: dict[str, tuple[str, str, str, str]] = {
    "count": ("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", "SELECT race, COUNT(*) AS n FROM PUMS.PUMS GROUP BY race", "race", "n"),
    "sum": (
        "SELECT race, SUM(income) AS s FROM pums GROUP BY race",
        "SELECT race, SUM(income) AS s FROM PUMS.PUMS GROUP BY race",
        "race",
        "s",
    ),
    "avg": (
        "SELECT educ, AVG(income) AS m FROM pums GROUP BY educ",
        "SELECT educ, AVG(income) AS m FROM PUMS.PUMS GROUP BY educ",
        "educ",
        "m",
    ),
    "median": (
        "SELECT sex, MEDIAN(income) AS m FROM pums GROUP BY sex",
        f"SELECT sex, FLOOR(income / {STEP!r}) AS bin, COUNT(*) AS n FROM PUMS.PUMS GROUP BY sex, FLOOR(income / {STEP!r})",  # noqa: S608 (constant)
        "sex",
        "m",
    ),
}
COARSE_HISTOGRAM = QUERIES["median"][1].replace(repr(STEP), repr(COARSE_STEP))
HISTOGRAM_STEPS = {"median": STEP, "median_coarse": COARSE_STEP}  # SmartNoise query name -> its bins' width
NO_MEDIAN = [  # SmartNoise's own forms of a median, expected to be refused
    "SELECT sex, MEDIAN(income) AS m FROM PUMS.PUMS GROUP BY sex",
    "SELECT sex, PERCENTILE_CONT(income) AS m FROM PUMS.PUMS GROUP BY sex",
]

POLICY = Policy(
    columns={"pums": {"race": ColumnUse.DIMENSION, "educ": ColumnUse.DIMENSION, "sex": ColumnUse.DIMENSION, "income": ColumnUse.MEASURE}},
    aggregates=frozenset({Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG, Aggregate.MEDIAN}),
    job_kinds=frozenset({JobKind.QUERY}),
    dp=DPSettings(epsilon_total=1000, epsilon_per_job=1, delta_total=0, max_rows_per_unit=MAX_ROWS),
)


def load_pums() -> pd.DataFrame:
    df = pd.read_csv(PUMS_CSV)
    df["income"] = df["income"].astype(np.int64)
    return df


def make_table(source: pd.DataFrame, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    columns = {
        name: rng.choice(source[name].to_numpy().astype(np.int64), size=rows)
        for name in ("age", "sex", "educ", "race", "income", "married")
    }
    columns["pid"] = np.arange(1, rows + 1, dtype=np.int64)
    return pd.DataFrame(columns)


def schemas() -> dict[str, DatasetSchema]:
    return {"pums": DatasetMeta.model_validate(PUMS_META).schema_only()}


Answer = dict[int, tuple[float, NoisyValue | NoisyQuantile]]  # cell key -> (noisy value, its stated error)


class Sandbox:
    def __init__(self) -> None:
        self.schemas = schemas()
        self.engine = DuckDBEngine(prepare_next=True)  # as the worker: each run a fresh database, made beforehand

    def plan(self, sql: str) -> query_dp.DPPlan:
        plan = validate(sql, POLICY, self.schemas, top_n=2)
        return query_dp.plan_dp(plan, self.schemas, MAX_ROWS, frozenset({"pums"}))  # pid unique per row, as the worker knows

    def answer(self, sql: str, table: pa.Table, cells: pa.Table | None = None) -> Answer:
        """One full DP answer (validate, plan, engine, noise); ``cells`` reuses a precomputed exact table."""
        dp_plan = self.plan(sql)
        exact = cells if cells is not None else self.engine.run(dp_plan.sql, {"pums": table})
        return self.noise(dp_plan, exact)

    def timed(self, sql: str, table: pa.Table) -> tuple[float, float, float, Answer]:
        """One full DP answer, timed: (validate + plan, engine, mechanism) seconds and the answer."""
        t0 = time.perf_counter()
        dp_plan = self.plan(sql)
        t1 = time.perf_counter()
        cells = self.engine.run(dp_plan.sql, {"pums": table})
        t2 = time.perf_counter()
        answer = self.noise(dp_plan, cells)
        return t1 - t0, t2 - t1, time.perf_counter() - t2, answer

    @staticmethod
    def noise(dp_plan: query_dp.DPPlan, cells: pa.Table) -> Answer:
        result = query_dp.answer(dp_plan, cells, Epsilon(EPSILON), MAX_ROWS)
        key, value = result.table.column_names
        keys, values = result.table[key].to_pylist(), result.table[value].to_pylist()
        return {k: (float(v), e) for k, v, e in zip(keys, values, result.errors[value], strict=True)}


def exact_answers(df: pd.DataFrame) -> dict[str, dict[int, float]]:
    return {
        "count": df.groupby("race").size().astype(float).to_dict(),
        "sum": df.groupby("race")["income"].sum().astype(float).to_dict(),
        "avg": df.groupby("educ")["income"].mean().astype(float).to_dict(),
        "median": df.groupby("sex")["income"].median().astype(float).to_dict(),
    }


def histogram_median(rows: list[list[float]], step: float) -> dict[int, float]:
    """The median by key from SmartNoise's noisy (key, bin, count) rows: post-processing only.

    Negative counts become 0; the median is interpolated linearly within the bin (of width ``step``) where
    the cumulative count passes half the total. Bins SmartNoise did not release count as 0.
    """
    medians = {}
    for key in sorted({int(r[0]) for r in rows}):
        counts = {int(r[1]): max(r[2], 0.0) for r in rows if int(r[0]) == key}
        half, below = sum(counts.values()) / 2, 0.0
        for bin_ in sorted(counts):
            if below + counts[bin_] >= half and counts[bin_] > 0:
                medians[key] = INCOME[0] + step * (bin_ + (half - below) / counts[bin_])
                break
            below += counts[bin_]
        else:
            medians[key] = (INCOME[0] + INCOME[1]) / 2  # nothing counted: the middle of the bounds
    return medians


def smartnoise_answers(sn_name: str, rows: list[list[float]]) -> dict[int, float]:
    step = HISTOGRAM_STEPS.get(sn_name)
    return histogram_median(rows, step) if step is not None else {int(r[0]): r[1] for r in rows}


def mae(runs: list[dict[int, float]], exact: dict[int, float], cells: set[int]) -> tuple[float, float]:
    """The mean absolute error over runs and cells, and its standard error (the runs are independent)."""
    errors = np.array([abs(run[c] - exact[c]) for run in runs for c in cells])
    return float(errors.mean()), float(errors.std(ddof=1) / np.sqrt(errors.size))


def run_smartnoise(csv: Path, queries: list[dict[str, Any]], runs: int) -> dict[str, Any] | None:
    """SmartNoise's answers from its own venv (``smartnoise_side.py``), or None when that venv is missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"\n!!! no SmartNoise venv at {VENV}: SmartNoise side NOT RUN (bash benchmarks/smartnoise_env.sh) !!!\n")
        return None
    with tempfile.TemporaryDirectory() as folder:
        spec, out = Path(folder) / "spec.json", Path(folder) / "out.json"
        spec.write_text(json.dumps({"csv": str(csv), "queries": queries, "runs": runs, "income": list(INCOME), "refused": NO_MEDIAN}))
        subprocess.run([str(python), str(Path(__file__).with_name("smartnoise_side.py")), str(spec), str(out)], check=True)
        return dict(json.loads(out.read_text()))


def error_benchmark(runs: int, checks: Checks) -> None:
    df = load_pums()
    table = pa.Table.from_pandas(df, preserve_index=False)
    exact = exact_answers(df)
    sandbox = Sandbox()
    print(f"== Error: PUMS ({len(df)} rows), epsilon = {EPSILON}, {runs} runs per query, MAE over cells vs exact ==")
    sb_runs: dict[str, list[Answer]] = {}
    for name, (sql, _, _, _) in QUERIES.items():
        cells = sandbox.engine.run(sandbox.plan(sql).sql, {"pums": table})  # exact cells: the noise is the only random part
        sb_runs[name] = [sandbox.answer(sql, table, cells) for _ in range(runs)]
        dp_checks.check_answers(checks, name, sb_runs[name], exact[name], df, hard_only=False)
    sn_queries = [{"name": n, "sql": q[1], "epsilon": EPSILON} for n, q in QUERIES.items()]
    sn_queries.append({"name": "avg_eq", "sql": QUERIES["avg"][1], "epsilon": EPSILON / 2})
    sn_queries.append({"name": "median_coarse", "sql": COARSE_HISTOGRAM, "epsilon": EPSILON})
    sn = run_smartnoise(PUMS_CSV, sn_queries, runs)
    if not checks.check("SmartNoise side ran (its venv exists)", sn is not None, f"run bash benchmarks/smartnoise_env.sh ({VENV})"):
        return
    assert sn is not None
    dp_checks.check_smartnoise(checks, sn, [smartnoise_answers("count", rows) for rows in sn["results"]["count"]], exact["count"], EPSILON)
    print(f"{'query':<46} {'cells':>5} {'MAE sandbox':>14} {'MAE SmartNoise':>15} {'ratio':>7} {'(s.e.)':>6}  SN cost (eps)")
    pairs = (("count", "count"), ("sum", "sum"), ("avg", "avg"), ("avg", "avg_eq"), ("median", "median"), ("median", "median_coarse"))
    for name, sn_name in pairs:
        sn_dicts = [smartnoise_answers(sn_name, rows) for rows in sn["results"][sn_name]]
        ours = [{k: v for k, (v, _) in run.items()} for run in sb_runs[name]]
        cells = set(ours[0]) & set.intersection(*(set(d) for d in sn_dicts)) & set(exact[name])
        (a, sa), (b, sb) = mae(ours, exact[name], cells), mae(sn_dicts, exact[name], cells)
        se = a / b * float(np.hypot(sa / a, sb / b))
        label = QUERIES[name][0].replace(" FROM pums", "") + {"avg_eq": " *", "median": " **", "median_coarse": " ***"}.get(sn_name, "")
        print(f"{label:<46} {len(cells):>5} {a:>14.6g} {b:>15.6g} {a / b:>7.3f} ±{se:.3f}  {sn['cost'][sn_name][0]:g}")
        checks.at_most(f"MAE sandbox / SmartNoise, {label.strip()}", a / b, 1.0)
    print("  sandbox spends epsilon = 1 per query in total (AVG: all of it on one release of each cell's two sums).")
    print("  * SmartNoise at Privacy(epsilon=0.5): its AVG then costs epsilon = 1 in total, as the sandbox's.")
    print(f"  ** SmartNoise has no median; its median here is read off a DP histogram (bins of {STEP:.6g}) by post-processing;")
    print(f"  *** the same with bins of {COARSE_STEP:.6g}.")
    print("  cells: groups present in the data and released by both (SmartNoise censor_dims=False keeps all).")


def timing_benchmark(rows: int, repeats: int, sn_repeats: int, checks: Checks) -> None:
    source = load_pums()
    t0 = time.perf_counter()
    df = make_table(source, rows)
    table = pa.Table.from_pandas(df, preserve_index=False)
    made = time.perf_counter() - t0
    exact = exact_answers(df)
    print(f"\n== Timing: {rows:,} rows, PUMS-like (numpy seed 2024, each column resampled from its PUMS marginal, pid unique) ==")
    print(f"  table built in {made:.2f} s; sandbox {repeats} repeats per query, SmartNoise {sn_repeats} repeats per query (median)")
    sandbox = Sandbox()
    sb: dict[str, list[tuple[float, float, float, Answer]]] = {}
    for name, (sql, _, _, _) in QUERIES.items():
        sandbox.answer(sql, table)  # warm-up
        sb[name] = [sandbox.timed(sql, table) for _ in range(repeats)]
        dp_checks.check_answers(checks, f"{name} at {rows:,} rows", [r[3] for r in sb[name]], exact[name], df, hard_only=True)
        domain = set(PUMS_META["columns"][QUERIES[name][2]]["domain"])
        checks.check(f"{name} at {rows:,} rows: every cell of the domain answered", all(set(r[3]) == domain for r in sb[name]))
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "pums_like.csv"
        df.to_csv(csv, index=False)
        sn = run_smartnoise(csv, [{"name": n, "sql": q[1], "epsilon": EPSILON} for n, q in QUERIES.items()], sn_repeats)
    checks.check("SmartNoise side ran (its venv exists)", sn is not None, f"run bash benchmarks/smartnoise_env.sh ({VENV})")
    if sn is not None:
        setup = sn["setup_s"][str(EPSILON)]
        print(f"  SmartNoise reader setup (snsql.from_connection: loads the DataFrame into in-memory SQLite): {setup:.3f} s")
        print(f"  (SmartNoise's CSV read into pandas, not counted: {sn['read_s']:.2f} s)")
    print(f"{'':46} {'--------- sandbox (s) ---------':>31}  {'------ SmartNoise (s) ------':>29}")
    print(f"{'query':<46} {'total':>7} {'engine':>7} {'noise':>7} {'plan':>7}  {'total':>9} {'engine':>9} {'rest':>9} {'speed-up':>9}")
    speed_ups: dict[str, float] = {}
    for name, (sql, _, _, _) in QUERIES.items():
        plan, engine, noise = (statistics.median(r[i] for r in sb[name]) for i in range(3))
        total = statistics.median(sum(r[:3]) for r in sb[name])
        line = f"{sql.replace(' FROM pums', ''):<46} {total:>7.4f} {engine:>7.4f} {noise:>7.4f} {plan:>7.4f}"
        if sn is not None:
            sn_total, sn_engine = statistics.median(sn["times"][name]), statistics.median(sn["engine"][name])
            line += f"  {sn_total:>9.4f} {sn_engine:>9.4f} {sn_total - sn_engine:>9.4f} {sn_total / total:>8.1f}x"
            speed_ups[name] = sn_total / total
        print(line)
    for name, speed_up in speed_ups.items():
        checks.at_least(f"speed-up over SmartNoise, {name}", speed_up, SPEED_UP_TARGET, "x")
    print("  sandbox: engine = DuckDB computing the exact cells (a fresh in-memory database per run, made in the background")
    print(f"  after the previous run, as the worker does; default threads, {os.cpu_count()} CPUs here); noise = the mechanisms")
    print("  (OpenDP); plan = validate + plan_dp. The table is already in memory (as Arrow).")
    print("  SmartNoise: engine = its reader's _execute_ast (its in-memory SQLite, loaded at setup, computing the exact")
    print("  aggregates); rest = parse + rewrite + noise + post-processing. For the median, its histogram query.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sn-repeats", type=int, default=3)
    parser.add_argument("--timing-only", action="store_true", help="skip the error benchmark")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.rows, args.repeats, args.sn_repeats = SMOKE_RUNS, SMOKE_ROWS, 2, 1
    checks = Checks(args.smoke)
    t0 = time.perf_counter()
    if not args.timing_only:
        error_benchmark(args.runs, checks)
    timing_benchmark(args.rows, args.repeats, args.sn_repeats, checks)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
