"""The one module a script job uses: read the granted data, emit the declared outputs.

    import sandbox_io
    df = sandbox_io.read("pums")            # a pandas DataFrame of the columns the grant allows
    sandbox_io.emit("by_sex", table_df)     # a declared "table" output: a DataFrame
    sandbox_io.emit("note", "some text")    # a declared "text" output: a str
    sandbox_io.emit("plot", figure)         # a declared "figure" output: a matplotlib Figure

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
