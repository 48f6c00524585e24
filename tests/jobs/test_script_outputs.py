"""A script's outputs are parsed strictly and rebuilt: malformed or oversized ones are refused, figures lose their metadata."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from jobs.script import OutputType
from jobs.script import outputs as out


def table_json(columns: Any, data: Any) -> bytes:
    return json.dumps({"columns": columns, "data": data}).encode()


def test_a_table_is_rebuilt_with_its_types() -> None:
    parsed = out.parse(OutputType.TABLE, table_json(["sex", "n", "mean", "label", "mixed"], [[1, 5, 2.5, "a", 1], [2, 7, None, "b", "x"]]))
    assert parsed.released() == {
        "type": "table",
        "columns": [
            {"name": "sex", "type": "int64"},
            {"name": "n", "type": "int64"},
            {"name": "mean", "type": "double"},
            {"name": "label", "type": "string"},
            {"name": "mixed", "type": "string"},
        ],
        "rows": [
            {"sex": 1, "n": 5, "mean": 2.5, "label": "a", "mixed": "1"},
            {"sex": 2, "n": 7, "mean": None, "label": "b", "mixed": "x"},
        ],
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b'{"columns": ["a"], "data": [[NaN]]}', id="nan"),
        pytest.param(table_json(["a"], [[1]])[:-1] + b', "index": [0]}', id="extra-key"),
        pytest.param(table_json([], []), id="no-column"),
        pytest.param(table_json(["a", "a"], [[1, 2]]), id="duplicate-column"),
        pytest.param(table_json([1], [[1]]), id="column-not-a-string"),
        pytest.param(table_json(["a"], [[1, 2]]), id="ragged-row"),
        pytest.param(table_json(["a"], [[[1, 2]]]), id="nested-cell"),
        pytest.param(table_json(["a"], [[{"k": 1}]]), id="object-cell"),
        pytest.param(table_json(["a"], [[2**64]]), id="integer-beyond-64-bits"),
        pytest.param(table_json(["a"], [["x" * (out.MAX_CELL_CHARS + 1)]]), id="long-cell"),
        pytest.param(table_json(["a"], [[1]] * (out.MAX_ROWS + 1)), id="too-many-rows"),
        pytest.param(table_json([f"c{i}" for i in range(out.MAX_COLUMNS + 1)], []), id="too-many-columns"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
    ],
)
def test_a_malformed_or_oversized_table_is_refused(data: bytes) -> None:
    with pytest.raises(out.OutputRefused):
        out.parse(OutputType.TABLE, data)


def test_text_is_utf8_and_capped() -> None:
    assert out.parse(OutputType.TEXT, "数据 ok".encode()).released() == {"type": "text", "text": "数据 ok"}
    with pytest.raises(out.OutputRefused):
        out.parse(OutputType.TEXT, b"\xff")
    with pytest.raises(out.OutputRefused):
        out.parse(OutputType.TEXT, b"x" * (out.MAX_TEXT_CHARS + 1))


def png(size: tuple[int, int], text: dict[str, str] | None = None, trailer: bytes = b"") -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    sink = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(sink, format="PNG", pnginfo=info)
    return sink.getvalue() + trailer


def test_a_figure_is_redrawn_without_metadata_or_trailing_bytes() -> None:
    hidden = "pid=12345 income=67890"
    parsed = out.parse(OutputType.FIGURE, png((40, 30), {"Comment": hidden}, trailer=hidden.encode()))
    assert parsed.png is not None
    assert hidden.encode() not in parsed.png
    with Image.open(io.BytesIO(parsed.png)) as image:
        assert image.size == (40, 30)
        assert image.getpixel((0, 0)) == (10, 20, 30)  # the pixels are kept: what they show is for the reviewers
        assert "Comment" not in image.info


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GIF89a" + b"\x00" * 20, id="not-png"),
        pytest.param(png((10, 10))[:40], id="truncated"),
        pytest.param(png((out.MAX_SIDE + 1, 1)), id="too-wide"),
        pytest.param(png((2100, 2100)), id="too-many-pixels"),
    ],
)
def test_a_malformed_or_oversized_figure_is_refused(data: bytes) -> None:
    with pytest.raises(out.OutputRefused):
        out.parse(OutputType.FIGURE, data)


def test_colours_under_transparent_pixels_do_not_survive_the_redraw() -> None:
    image = Image.new("RGBA", (8, 1), (0, 0, 0, 0))
    for x, byte in enumerate(b"SSN12345"):
        image.putpixel((x, 0), (byte, byte, byte, 0))  # invisible to a reviewer, readable by the analyst
    sink = io.BytesIO()
    image.save(sink, format="PNG")
    parsed = out.parse(OutputType.FIGURE, sink.getvalue())
    assert parsed.png is not None
    with Image.open(io.BytesIO(parsed.png)) as redrawn:
        assert {redrawn.getpixel((x, 0)) for x in range(8)} == {(255, 255, 255)}


@pytest.mark.parametrize("hidden", ["\u200b", "\u202e", "\ue000", "\x07"], ids=["zero-width", "bidi", "private-use", "bell"])
def test_invisible_characters_are_refused_in_text_names_and_cells(hidden: str) -> None:
    with pytest.raises(out.OutputRefused, match="invisible or control"):
        out.parse(OutputType.TEXT, f"a{hidden}b".encode())
    with pytest.raises(out.OutputRefused, match="invisible or control"):
        out.parse(OutputType.TABLE, json.dumps({"columns": [f"a{hidden}"], "data": [[1]]}).encode())
    with pytest.raises(out.OutputRefused, match="invisible or control"):
        out.parse(OutputType.TABLE, json.dumps({"columns": ["a"], "data": [[f"x{hidden}"]]}).encode())
    assert out.parse(OutputType.TEXT, b"line one\n\tline two").text == "line one\n\tline two"
