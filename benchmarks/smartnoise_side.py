"""SmartNoise SQL's side of ``dp_vs_smartnoise.py``, run by the SmartNoise venv's python (never by ours).

smartnoise-sql pins opendp<0.15 and this project uses opendp 0.16, so the two cannot share a
process: ``dp_vs_smartnoise.py`` runs this file with the venv made by ``smartnoise_env.sh`` and
exchanges JSON through files. It imports only the standard library, pandas and snsql.

    <venv>/bin/python benchmarks/smartnoise_side.py spec.json out.json

spec: ``csv`` (the data), ``income`` (bounds), ``queries`` (name, sql, epsilon), ``runs``,
``refused`` (SQL expected to be refused). out: per query the noisy rows of every run, the time of
each run and, of it, the time in SmartNoise's SQL engine (its reader's ``_execute_ast``: the exact
aggregates in its in-memory SQLite); its privacy cost; the reader's setup time; the refusals.
"""

import json
import sys
import time
from pathlib import Path

import pandas as pd
import snsql
from snsql import Privacy


def metadata(income: list[int], rows: int) -> dict:
    """The PUMS table's SmartNoise metadata, with the same contribution assumption as the sandbox's.

    Like for like: the sandbox's privacy unit is pid and, as the worker reads from the dataset's
    counts (units == rows), each unit has exactly one row, so it needs no sampling and calibrates
    to one row per unit (max_rows = 1). Here: pid is the private id, ``max_ids: 1`` (sensitivity
    of one row per person) and ``sample_max_ids: False``, i.e. SmartNoise is told the data already
    has at most one row per person and skips its reservoir sample (``ROW_NUMBER() OVER (PARTITION
    BY pid ORDER BY RANDOM())``), which the sandbox does not do either. (``row_privacy: True``
    would give the same noise, but then the unit would be the row, not pid.) ``censor_dims: False``:
    every group is released, as the sandbox releases every cell of the declared domains;
    ``clamp_columns: True``: income clamped to its bounds, as the sandbox does.
    """
    table = {
        "rows": rows, "max_ids": 1, "row_privacy": False, "sample_max_ids": False,
        "censor_dims": False, "clamp_counts": False, "clamp_columns": True, "use_dpsu": False,
        "pid": {"type": "int", "private_id": True},
        "race": {"type": "int"}, "educ": {"type": "int"},
        "income": {"type": "int", "lower": income[0], "upper": income[1]},
        "age": {"type": "int", "lower": 0, "upper": 100},
        "sex": {"type": "int"}, "married": {"type": "int"},
    }  # fmt: skip
    return {"": {"PUMS": {"PUMS": table}}}


def timed_engine(reader: object) -> list[float]:
    """Wrap the reader's SQL engine so that the time spent in it is recorded, one entry per call."""
    engine = reader.reader  # the PandasReader: an in-memory SQLite database loaded at setup
    inner = engine._execute_ast
    spent: list[float] = []

    def execute_ast(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    engine._execute_ast = execute_ast
    return spent


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    start = time.perf_counter()
    df = pd.read_csv(spec["csv"])
    df["income"] = df["income"].astype("int64")
    meta = metadata(spec["income"], len(df))
    out = {"read_s": time.perf_counter() - start, "setup_s": {}, "results": {}, "times": {}, "engine": {}, "cost": {}, "refused": {}}
    readers = {}
    for q in spec["queries"]:
        eps = q["epsilon"]
        if eps not in readers:
            start = time.perf_counter()
            reader = snsql.from_connection(df, privacy=Privacy(epsilon=eps, delta=0.0), metadata=meta)
            out["setup_s"][str(eps)] = time.perf_counter() - start
            readers[eps] = (reader, timed_engine(reader))
        reader, spent = readers[eps]
        out["cost"][q["name"]] = [float(c) for c in reader.get_privacy_cost(q["sql"])]
        rows, times, engine = [], [], []
        for _ in range(spec["runs"]):
            spent.clear()
            start = time.perf_counter()
            result = reader.execute(q["sql"])
            times.append(time.perf_counter() - start)
            engine.append(sum(spent))
            rows.append([[float(v) for v in r] for r in result[1:]])
        out["results"][q["name"]], out["times"][q["name"]], out["engine"][q["name"]] = rows, times, engine
    for sql in spec["refused"]:
        try:
            next(iter(readers.values()))[0].execute(sql)
            out["refused"][sql] = None
        except Exception as error:
            out["refused"][sql] = f"{type(error).__name__}: {error}"
    Path(sys.argv[2]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
