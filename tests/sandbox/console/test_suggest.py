"""The column roles suggested from a header and a sample: identifiers by their check characters, categories, measures."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import ValidationFailed
from core.values import ColumnRole, ColumnType
from jobs.bounded import IngestLimits
from sandbox.console.steward import suggest
from sandbox.console.steward.suggest import Reason

LIMITS = IngestLimits(max_rows=1_000_000, max_columns=100, max_cells=10_000_000, max_decoded_bytes=1 << 30)


@pytest.mark.parametrize(
    ("name", "values", "role", "column_type", "reason"),
    [
        pytest.param(
            "code",
            ["91350100M000100Y43", "91440300708461136T"],
            ColumnRole.IDENTIFIER,
            ColumnType.STRING,
            Reason.CREDIT_CODE,
            id="uscc-valid",
        ),
        pytest.param(
            "code", ["91350100M000100Y42", "91440300708461136A"], ColumnRole.ATTRIBUTE, ColumnType.STRING, Reason.TEXT, id="uscc-bad-check"
        ),
        pytest.param(
            "no", ["11010519491231002X", "440524188001010014"], ColumnRole.IDENTIFIER, ColumnType.STRING, Reason.RESIDENT_ID, id="id-number"
        ),
        pytest.param(
            "no", ["110105194912310021", "440524188001010015"], ColumnRole.SENSITIVE, ColumnType.INT, Reason.NUMBER, id="id-bad-check"
        ),
        pytest.param("tel", ["13812345678", "19912345678"], ColumnRole.IDENTIFIER, ColumnType.STRING, Reason.MOBILE, id="mobile"),
        pytest.param("tel", ["12812345678", "10012345678"], ColumnRole.SENSITIVE, ColumnType.INT, Reason.NUMBER, id="not-a-mobile"),
        pytest.param("身份证号", ["", ""], ColumnRole.IDENTIFIER, ColumnType.STRING, Reason.IDENTIFIER_NAME, id="name-says-identifier"),
        pytest.param("年龄", ["31", "47", "52"], ColumnRole.QUASI_IDENTIFIER, ColumnType.INT, Reason.QUASI_NAME, id="name-says-trait"),
        pytest.param(
            "score", [str(i % 3) for i in range(50)], ColumnRole.QUASI_IDENTIFIER, ColumnType.INT, Reason.FEW_VALUES, id="few-values"
        ),
        pytest.param("amount", [f"{i}.5" for i in range(50)], ColumnRole.SENSITIVE, ColumnType.FLOAT, Reason.NUMBER, id="measure"),
        pytest.param("remark", [f"note {i}" for i in range(50)], ColumnRole.ATTRIBUTE, ColumnType.STRING, Reason.TEXT, id="text"),
        pytest.param("day", ["2024-01-02", "2024-03-04"], ColumnRole.ATTRIBUTE, ColumnType.DATE, Reason.TEXT, id="date"),
        pytest.param("blank", ["", " "], ColumnRole.ATTRIBUTE, ColumnType.STRING, Reason.EMPTY, id="empty"),
    ],
)
def test_suggestions(name: str, values: list[str], role: ColumnRole, column_type: ColumnType, reason: Reason) -> None:
    assert suggest.suggest_column(name, values) == suggest.Suggestion(name, role, column_type, reason)


def test_one_stray_value_in_ten_keeps_the_pattern() -> None:
    values = ["13812345678"] * 9 + ["unknown"]
    assert suggest.suggest_column("contact", values).reason is Reason.MOBILE
    assert suggest.suggest_column("contact", values[:8] + ["unknown"] * 2).reason is not Reason.MOBILE


def test_a_large_csv_is_sampled_from_its_head_only() -> None:
    """The rows past the sample are never parsed: a broken last line does not matter, and GB18030 text is read."""
    head = "地区,收入\n".encode("gb18030") + "".join(f"东城区,{i}\n" for i in range(40_000)).encode("gb18030")
    assert len(head) > suggest.SAMPLE_BYTES
    columns = suggest.sample("t.csv", head + b'"unterminated,\n', LIMITS)
    assert list(columns) == ["地区", "收入"]
    assert len(columns["收入"]) == suggest.SAMPLE_ROWS
    assert columns["地区"][0] == "东城区"


def test_an_unreadable_file_is_refused_without_its_content() -> None:
    with pytest.raises(ValidationFailed, match="file") as raised:
        suggest.sample("t.parquet", b"PAR1 not really PAR1", LIMITS)
    assert "not really" not in str(raised.value)


def test_a_parquet_file_is_sampled_from_its_first_rows() -> None:
    table = pa.table({"手机号码": ["13812345678"] * 2_000, "amount": [float(i) for i in range(2_000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    columns = suggest.sample("t.parquet", sink.getvalue(), LIMITS)
    assert {name: len(values) for name, values in columns.items()} == {"手机号码": suggest.SAMPLE_ROWS, "amount": suggest.SAMPLE_ROWS}
    found = suggest.suggest(columns)
    assert [(s.role, s.reason) for s in found] == [(ColumnRole.IDENTIFIER, Reason.MOBILE), (ColumnRole.SENSITIVE, Reason.NUMBER)]
