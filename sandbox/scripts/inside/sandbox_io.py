"""The one module a script job uses: read the granted data, emit the declared outputs.

    import sandbox_io
    df = sandbox_io.read("pums")            # a pandas DataFrame of the columns the grant allows
    sandbox_io.emit("by_sex", table_df)     # a declared "table" output: a DataFrame
    sandbox_io.emit("note", "some text")    # a declared "text" output: a str
    sandbox_io.emit("plot", figure)         # a declared "figure" output: a matplotlib Figure
    t = sandbox_io.crosstab(df, "sex", "educ", values="income", aggfunc="mean")
    sandbox_io.emit("by_sex", t)             # a table with its disclosure evidence, for the reviewers
    p = sandbox_io.pivot_table(df, "income", index="educ", columns="sex", aggfunc="median")
    d = sandbox_io.describe(df, ["age", "income"])

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


PIVOT_AGGREGATES = {"count": "count", "sum": "sum", "mean": "avg", "median": "median", "min": "min", "max": "max"}
DESCRIBED: tuple[tuple[str, str], ...] = (  # describe's columns and the aggregate each is
    ("count", "count"), ("mean", "avg"), ("std", "stddev"), ("min", "min"),
    ("25%", "quantile"), ("50%", "median"), ("75%", "quantile"), ("max", "max"),
)  # fmt: skip
ORDER_STATISTICS = frozenset({"min", "max", "median", "quantile"})


def pivot_table(df: Any, values: str, index: Any, columns: Any = None, aggfunc: str = "mean") -> Any:
    """A wide table like ``pandas.pivot_table``: one row per combination of ``index`` present, ``aggfunc`` of ``values``.

    With ``columns``, one column per combination of their values present, named ``<column>=<value>``
    (joined by ","); a combination with no row is an empty cell. Without, one column named ``aggfunc``.
    ``aggfunc`` is "count" (values present), "sum", "mean", "median", "min" or "max". Emit the returned
    DataFrame as it is for the reviewers to see its evidence, cell by cell.
    """
    import pandas  # noqa: PLC0415

    keys, across = _names(index), _names(columns)
    if aggfunc not in PIVOT_AGGREGATES:
        raise ValueError(f"aggfunc is one of {sorted(PIVOT_AGGREGATES)}")
    if not keys:
        raise ValueError("index names at least one column")
    grid: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    headers: dict[str, None] = {}
    for found, part in df.groupby([*keys, *across], dropna=False, sort=True):
        group = found if isinstance(found, tuple) else (found,)
        header = ",".join(f"{name}={value}" for name, value in zip(across, group[len(keys) :], strict=True)) or aggfunc
        if header in keys:
            raise ValueError(f"a pivoted column would be named {header!r}, like an index column")
        headers[header] = None
        present = part[values].dropna()
        cell = _grid_cell(PIVOT_AGGREGATES[aggfunc], _statistic(aggfunc, present), len(part), present)
        grid.setdefault(group[: len(keys)], {})[header] = cell
    rows, cells = [], []
    for row, (key, line) in enumerate(grid.items()):
        rows.append([*key, *(line[h]["value"] if h in line else None for h in headers)])
        cells += [{"row": row, "column": h, **line[h]} for h in headers if h in line]
    table = pandas.DataFrame(rows, columns=[*keys, *headers])
    _EVIDENCE[id(table)] = (table, {"helper": "pivot_table", "keys": keys, "rows": len(rows), "cells": cells})
    return table


def describe(df: Any, columns: Any = None) -> Any:
    """Like ``DataFrame.describe`` of numeric columns, one row per column: count, mean, std, min, 25%, 50%, 75%, max.

    ``columns`` defaults to every numeric column. Each statistic is a cell with its evidence: the
    minimum, maximum and quartiles are order statistics, judged by the rows at or below and at or
    above them (a maximum is one person's value unless enough rows share it).
    """
    import pandas  # noqa: PLC0415
    from pandas.api.types import is_bool_dtype, is_numeric_dtype  # noqa: PLC0415

    names = _names(columns) or [str(c) for c in df.columns if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]
    rows, cells = [], []
    for row, name in enumerate(names):
        present = df[name].dropna().astype(float)
        found = {}
        for column, aggregate in DESCRIBED:
            found[column] = _grid_cell(aggregate, _statistic(column, present), len(df), present)
            cells.append({"row": row, "column": column, **found[column]})
        rows.append([name, *(found[column]["value"] for column, _ in DESCRIBED)])
    table = pandas.DataFrame(rows, columns=["column", *(column for column, _ in DESCRIBED)])
    _EVIDENCE[id(table)] = (table, {"helper": "describe", "keys": ["column"], "rows": len(rows), "cells": cells})
    return table


def _statistic(name: str, present: Any) -> Any:
    """``name`` (an aggfunc or a describe column) of the values ``present``; None where it is undefined (no value, one for std)."""
    if name == "count":
        return len(present)
    if len(present) == 0 or (name == "std" and len(present) < 2):
        return None
    quantiles = {"25%": 0.25, "50%": 0.5, "75%": 0.75}
    value = present.quantile(quantiles[name]) if name in quantiles else getattr(present, name)()
    return float(value)


def _grid_cell(aggregate: str, value: Any, rows: int, present: Any) -> dict[str, Any]:
    """A grid cell's evidence: a crosstab cell's (``_cell``), its aggregate, and for an order statistic the rows on each side."""
    cell = {"aggregate": aggregate, **_cell(value, rows, present)}
    if aggregate in ORDER_STATISTICS and value is not None:
        cell |= {"below": int((present <= value).sum()), "above": int((present >= value).sum())}
    return cell


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
