"""A version's unit count agrees with SQL's equality: a decimal unit's zero is one unit, a NaN is none.

A version whose unit count equals its row count has every row counted as a different unit, by
position (``jobs.population``); if the count saw ``0.0`` and ``-0.0`` as two units where a query sees
one, one person's two rows would count as two units in a released cell.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from core.errors import ValidationFailed
from core.schema import DatasetMeta
from jobs.ingest import validate

META = DatasetMeta.model_validate(
    {
        "name": "t",
        "title": "decimal units",
        "level": "一般",
        "privacy_unit": "pid",
        "columns": {"pid": {"role": "identifier", "type": "float"}, "x": {"role": "attribute", "type": "int"}},
    }
)


def test_negative_zero_is_the_same_unit_as_zero() -> None:
    ingested = validate(META, pa.table({"pid": [0.0, -0.0, 1.0], "x": [1, 2, 3]}))
    assert (ingested.row_count, ingested.unit_count) == (3, 2)
    con = duckdb.connect()
    con.register("version", ingested.table)
    assert con.execute("SELECT COUNT(DISTINCT pid) FROM version").fetchall() == [(ingested.unit_count,)]
    assert [str(v) for v in ingested.table.column("pid").to_pylist()] == ["0.0", "0.0", "1.0"]


@pytest.mark.parametrize("nan", [float("nan"), -float("nan")])
def test_a_nan_unit_is_refused(nan: float) -> None:
    with pytest.raises(ValidationFailed) as refused:
        validate(META, pa.table({"pid": [nan, 1.0, 2.0], "x": [1, 2, 3]}))
    assert "NaN" in str(refused.value.details)
