"""The one module a script job uses: read the granted data, emit the declared outputs.

    import sandbox_io
    df = sandbox_io.read("pums")            # a pandas DataFrame of the columns the grant allows
    sandbox_io.emit("by_sex", table_df)     # a declared "table" output: a DataFrame
    sandbox_io.emit("note", "some text")    # a declared "text" output: a str
    sandbox_io.emit("plot", figure)         # a declared "figure" output: a matplotlib Figure
    t = sandbox_io.crosstab(df, "sex", "educ", values="income", aggfunc="mean")
    sandbox_io.emit("by_sex", t)             # a table with its disclosure evidence, for the reviewers

Identifiers never reach the script: the inputs hold only the columns the policy grants (dimension,
measure, plain). Outputs are written to /out, which the sandbox's trusted code re-reads, checks and
re-serialises after the script ends; anything else left in /out fails the job.
"""

from __future__ import annotations

import json
import os
from typing import Any

_DATA = "/data"
_OUT = "/out"
with open("/job/outputs.json", encoding="utf-8") as _handle:
    _DECLARED = json.load(_handle)


def datasets() -> list[str]:
    """The names of the datasets this job may read."""
    return sorted(name[: -len(".parquet")] for name in os.listdir(_DATA) if name.endswith(".parquet"))


def read(name: str) -> Any:
    """The dataset ``name`` as a pandas DataFrame (granted columns only)."""
    import pandas  # noqa: PLC0415

    if name not in datasets():
        raise KeyError(f"{name!r} is not a dataset of this job; it may read {datasets()}")
    return pandas.read_parquet(os.path.join(_DATA, f"{name}.parquet"))


def emit(name: str, obj: Any) -> None:
    """Write the declared output ``name``: a DataFrame for a table, a str for text, a matplotlib Figure for a figure."""
    kind = _DECLARED["types"].get(name)
    if kind is None:
        raise KeyError(f"{name!r} is not a declared output; declare it in the job's spec (outputs: {sorted(_DECLARED['types'])})")
    path = os.path.join(_OUT, _DECLARED["files"][name])
    if kind == "table":
        _table(path, obj)
        evidence = _evidence_of(obj)
        if evidence is not None:
            with open(os.path.join(_OUT, f"{name}.evidence.json"), "w", encoding="utf-8") as handle:
                json.dump(evidence, handle)
    elif kind == "text":
        if not isinstance(obj, str):
            raise TypeError(f"output {name!r} is text: emit a str, not {type(obj).__name__}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(obj)
    else:
        savefig = getattr(obj, "savefig", None)
        if savefig is None:
            raise TypeError(f"output {name!r} is a figure: emit a matplotlib Figure, not {type(obj).__name__}")
        savefig(path, format="png")


def _table(path: str, obj: Any) -> None:
    import pandas  # noqa: PLC0415

    if isinstance(obj, pandas.Series):
        obj = obj.to_frame()
    if not isinstance(obj, pandas.DataFrame):
        raise TypeError(f"a table output is a pandas DataFrame, not {type(obj).__name__}")
    frame = obj.reset_index() if not isinstance(obj.index, pandas.RangeIndex) else obj
    frame.columns = [str(column) for column in frame.columns]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(frame.to_json(orient="split", index=False, date_format="iso", double_precision=15, default_handler=str))


# ACRO-style helpers: each computes a table *and* its disclosure evidence from the data it is given.
# The evidence goes to the reviewers with the table it belongs to (``emit``); the sandbox checks it
# against the emitted table and judges it by the grant's rules, always as advice: the helper ran in the
# same sandbox as the script, on data the script may have transformed first.
AGGREGATES = {"count": "count", "sum": "sum", "mean": "avg"}
TOP = 10  # the largest contributions kept per cell (dominance and p-ratio need the top n and the top 2)
_EVIDENCE: dict[int, tuple[Any, dict[str, Any]]] = {}


def crosstab(df: Any, index: Any, columns: Any = None, values: str | None = None, aggfunc: str = "count") -> Any:
    """A long table: one row per combination of ``index`` (and ``columns``) present, with ``aggfunc`` of ``values``.

    ``aggfunc`` is "count" (rows), "sum" or "mean" of the column ``values``. Emit the returned
    DataFrame as it is for the reviewers to see its evidence (rows per cell, the largest contributions).
    """
    import pandas  # noqa: PLC0415

    keys = [*_names(index), *_names(columns)]
    if aggfunc not in AGGREGATES:
        raise ValueError(f"aggfunc is one of {sorted(AGGREGATES)}")
    if aggfunc != "count" and values is None:
        raise ValueError(f"aggfunc {aggfunc!r} needs values")
    rows, cells = [], []
    for group, part in df.groupby(keys, dropna=False, sort=True):
        present: Any = part[values].dropna() if values is not None else None
        value = len(part) if present is None or aggfunc == "count" else float(getattr(present, aggfunc)()) if len(present) else None
        rows.append([*(group if isinstance(group, tuple) else (group,)), value])
        cells.append(_cell(value, len(part), present))
    table = pandas.DataFrame(rows, columns=[*keys, aggfunc])
    _EVIDENCE[id(table)] = (table, {"helper": "crosstab", "aggregate": AGGREGATES[aggfunc], "keys": keys, "cells": cells})
    return table


def ols(df: Any, y: str, x: Any) -> Any:
    """An OLS of ``y`` on ``x`` (a column or a list of them) with an intercept: a table of term, coef, std_err, t, p.

    Its evidence, the residual degrees of freedom, is judged against the grant's ``dof_threshold``.
    """
    return _model("ols", df, y, x)


def logit(df: Any, y: str, x: Any) -> Any:
    """A logit of the 0/1 column ``y`` on ``x`` with an intercept, laid out and judged as ``ols``."""
    return _model("logit", df, y, x)


def _model(kind: str, df: Any, y: str, x: Any) -> Any:
    import pandas  # noqa: PLC0415
    import statsmodels.api as sm  # type: ignore[import-untyped]  # noqa: PLC0415

    columns = _names(x)
    data = df[[y, *columns]].dropna()
    design = sm.add_constant(data[columns].astype(float), has_constant="add")
    model = sm.OLS(data[y].astype(float), design) if kind == "ols" else sm.Logit(data[y].astype(float), design)
    fitted = model.fit() if kind == "ols" else model.fit(disp=0)
    table = pandas.DataFrame(
        {
            "term": list(design.columns),
            "coef": fitted.params.to_list(),
            "std_err": fitted.bse.to_list(),
            "t": fitted.tvalues.to_list(),
            "p": fitted.pvalues.to_list(),
        }
    )
    dof = float(fitted.df_resid)
    _EVIDENCE[id(table)] = (table, {"helper": kind, "dof": dof, "nobs": int(fitted.nobs), "coef": table["coef"].to_list()})
    return table


def _names(spec: Any) -> list[str]:
    return [] if spec is None else [spec] if isinstance(spec, str) else [str(name) for name in spec]


def _cell(value: Any, rows: int, present: Any) -> dict[str, Any]:
    cell: dict[str, Any] = {"value": value, "units": rows}
    if present is not None:
        cell |= {
            "top": [float(v) for v in present.nlargest(TOP)],
            "total": float(present.sum()),
            "negative": int((present < 0).sum()),
            "missing": rows - len(present),
        }
    return cell


def _evidence_of(obj: Any) -> dict[str, Any] | None:
    found = _EVIDENCE.get(id(obj))
    return found[1] if found is not None and found[0] is obj else None
