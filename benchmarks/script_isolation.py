"""Script isolation's cost: the sandbox (launcher, bubblewrap, seccomp, cgroup, tmpfs) against the same runtime run plainly.

Times, medians of N runs each, in one run:
  (a) start-up: an empty script isolated (``sandbox.scripts.isolation.run``) against the pinned runtime's
      ``python -I -c pass`` (``sandbox.scripts.runtime``);
  (b) a real analysis on the demo's PUMS (1,000 persons): a crosstab of sex by education with mean
      income and an OLS of income on age and education (statsmodels), isolated (reading the Parquet
      through ``sandbox_io``) against the same code run plainly on the same Parquet file.

Checked at every run (exit status 1 if any fails): both isolated runs succeed, and the analysis's
outputs inside equal those outside (same crosstab, same coefficients). Targets (full size only): at
most 0.3 s added per job, for (a) and for (b).

    .venv/bin/python benchmarks/script_isolation.py            # 7 runs each
    .venv/bin/python benchmarks/script_isolation.py --smoke    # 2 runs each, targets skipped
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.csv as pv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.checks import Checks, add_smoke_flag  # noqa: E402
from sandbox.scripts import runtime  # noqa: E402
from sandbox.scripts.isolation import run, unavailable  # noqa: E402
from sandbox.scripts.protocol import Confinement, Request  # noqa: E402

LIMITS = Confinement(wall_seconds=60, memory_bytes=4 * 2**30, cpu_seconds=61)
ANALYSIS = """
import statsmodels.formula.api as smf
table = df.groupby(["sex", "educ"]).agg(n=("age", "size"), mean_income=("income", "mean")).reset_index()
fit = smf.ols("income ~ age + educ", data=df).fit()
result = table.to_json(orient="split", index=False, double_precision=10) + "\\n" + fit.params.round(6).to_json()
"""
INSIDE = "import sandbox_io\ndf = sandbox_io.read('pums')\n" + ANALYSIS + "sandbox_io.emit('result', result)\n"
OUTSIDE = "import sys\nimport pandas as pd\ndf = pd.read_parquet(sys.argv[1])\n" + ANALYSIS + "print(result, end='')\n"


def median_seconds(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        work()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_smoke_flag(parser)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = 2 if args.smoke else args.runs
    checks = Checks(args.smoke)
    why = unavailable()
    if why:
        print(f"skipped: this host cannot isolate scripts: {why}")
        return
    pums = pv.read_csv(ROOT / "sandbox" / "demo" / "data" / "pums.csv").select(["age", "sex", "educ", "income"])
    sink = io.BytesIO()
    pq.write_table(pums, sink)
    data = sink.getvalue()
    python = [str(runtime.locate(runtime.RUNTIME).executable), "-I"]  # the same pinned runtime the sandbox runs

    plain_start = median_seconds(runs, lambda: subprocess.run([*python, "-c", "pass"], check=True, capture_output=True))
    empty = run(Request("pass", {}, {}, LIMITS))
    checks.check("an empty script succeeds isolated", empty.succeeded, repr(empty))
    isolated_start = median_seconds(runs, lambda: run(Request("pass", {}, {}, LIMITS)))
    print(f"start-up: plain {plain_start:.3f} s, isolated {isolated_start:.3f} s")

    with tempfile.TemporaryDirectory() as folder:
        parquet = Path(folder) / "pums.parquet"
        parquet.write_bytes(data)
        command = [*python, "-c", OUTSIDE, str(parquet)]
        outside = subprocess.run(command, check=True, capture_output=True).stdout
        plain_analysis = median_seconds(runs, lambda: subprocess.run(command, check=True, capture_output=True))
    request = Request(textwrap.dedent(INSIDE), {"pums": data}, {"result": "text"}, LIMITS)
    inside = run(request)
    checks.check("the analysis succeeds isolated", inside.succeeded, inside.stderr[-500:])
    checks.check("the analysis's outputs inside equal those outside", inside.outputs.get("result") == outside)
    isolated_analysis = median_seconds(runs, lambda: run(request))
    print(f"crosstab + OLS: plain {plain_analysis:.3f} s, isolated {isolated_analysis:.3f} s")

    checks.at_most("start-up added by the isolation", isolated_start - plain_start, 0.3, " s")
    checks.at_most("crosstab + OLS: time added by the isolation", isolated_analysis - plain_analysis, 0.3, " s")
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
