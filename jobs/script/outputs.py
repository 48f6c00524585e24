"""A script's outputs, parsed and re-serialised by trusted code before anyone sees them.

The bytes come from a sandbox that ran code nobody checked: each type is parsed by a strict reader
under caps and rebuilt from the parsed values alone, so that nothing but the declared content (no
metadata, no trailing bytes, no second image) comes out.

- table: JSON ``{"columns": [...], "data": [[...], ...]}`` (what ``sandbox_io.emit`` writes): column names
  unique strings, each cell null, a boolean, an integer within 64 bits, a finite float or a string;
  at most ``MAX_ROWS`` rows, ``MAX_COLUMNS`` columns and ``MAX_CELL_CHARS`` characters a cell;
- text: UTF-8, at most ``MAX_TEXT_CHARS`` characters;
- figure: a PNG of at most ``MAX_PIXELS`` pixels (each side at most ``MAX_SIDE``), decoded and drawn
  again into a new RGBA image, saved without any metadata chunk.

A malformed or oversized output raises ``OutputRefused`` with a message that quotes no value.
"""

from __future__ import annotations

import base64
import io
import json
import math
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from PIL import Image

from jobs.released import rows_of
from jobs.script import OutputType

MAX_ROWS = 10_000
MAX_COLUMNS = 100
MAX_CELL_CHARS = 1_000
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 100_000
MAX_SIDE = 4_000
MAX_PIXELS = 4_000_000
INT64 = 2**63


class OutputRefused(Exception):
    """An output the sandbox will not pass on: malformed or over a cap (the message quotes no value)."""


@dataclass(frozen=True)
class Parsed:
    """One output as the sandbox rebuilt it: a table, a text, or a PNG."""

    type: OutputType
    table: pa.Table | None = None
    text: str | None = None
    png: bytes | None = None

    def released(self) -> dict[str, Any]:
        """The JSON the analyst receives if the output is released."""
        if self.table is not None:
            columns = [{"name": name, "type": str(self.table.schema.field(name).type)} for name in self.table.column_names]
            return {"type": self.type.value, "columns": columns, "rows": rows_of(self.table)}
        if self.png is not None:
            return {"type": self.type.value, "media_type": "image/png", "png_base64": base64.b64encode(self.png).decode("ascii")}
        return {"type": self.type.value, "text": self.text}


def parse(kind: OutputType, data: bytes) -> Parsed:
    """The output of type ``kind`` rebuilt from ``data``; ``OutputRefused`` if it is malformed or too large."""
    if kind is OutputType.TABLE:
        return Parsed(kind, table=table(data))
    if kind is OutputType.TEXT:
        return Parsed(kind, text=text(data))
    return Parsed(kind, png=figure(data))


def text(data: bytes) -> str:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OutputRefused("a text output is not valid UTF-8") from None
    if len(decoded) > MAX_TEXT_CHARS:
        raise OutputRefused(f"a text output has more than {MAX_TEXT_CHARS} characters")
    _visible(decoded, "a text output", allowed="\n\t")
    return decoded


# Characters a reviewer cannot see (or that reorder what they see) could carry data past review:
# control (but line breaks and tabs in text), format (zero-width, bidirectional), surrogate, private
# use and unassigned code points are refused in text, column names and cells.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _visible(value: str, what: str, allowed: str = "") -> None:
    for char in value:
        if char not in allowed and unicodedata.category(char) in _HIDDEN:
            raise OutputRefused(f"{what} holds an invisible or control character (U+{ord(char):04X})")


def table(data: bytes) -> pa.Table:
    try:
        found = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OutputRefused("a table output is not the JSON sandbox_io.emit writes") from None
    if not isinstance(found, dict) or set(found) != {"columns", "data"}:
        raise OutputRefused("a table output must hold exactly 'columns' and 'data'")
    names, rows = found["columns"], found["data"]
    _check_names(names)
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise OutputRefused(f"a table output's data must be a list of at most {MAX_ROWS} rows")
    columns: list[list[Any]] = [[] for _ in names]
    for row in rows:
        if not isinstance(row, list) or len(row) != len(names):
            raise OutputRefused("every row of a table output has one cell per column")
        for cells, cell in zip(columns, row, strict=True):
            cells.append(_cell(cell))
    return pa.table({name: _column(cells) for name, cells in zip(names, columns, strict=True)})


def _no_constant(name: str) -> None:
    raise ValueError("NaN and infinities are not JSON")


def _check_names(names: Any) -> None:
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_COLUMNS:
        raise OutputRefused(f"a table output has 1 to {MAX_COLUMNS} columns")
    if not all(isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS for name in names) or len(set(names)) != len(names):
        raise OutputRefused(f"a table output's column names are distinct strings of 1 to {MAX_NAME_CHARS} characters")
    for name in names:
        _visible(name, "a table output's column name")


def _cell(cell: Any) -> Any:
    if cell is None or isinstance(cell, bool):
        return cell
    if isinstance(cell, int):
        if not -INT64 <= cell < INT64:
            raise OutputRefused("a table output holds an integer beyond 64 bits")
        return cell
    if isinstance(cell, float):
        if not math.isfinite(cell):
            raise OutputRefused("a table output holds a number that is not finite")
        return cell
    if isinstance(cell, str):
        if len(cell) > MAX_CELL_CHARS:
            raise OutputRefused(f"a table output holds a cell of more than {MAX_CELL_CHARS} characters")
        _visible(cell, "a table output's cell")
        return cell
    raise OutputRefused("a table output's cells are null, booleans, numbers or strings")


def _column(cells: list[Any]) -> pa.Array:
    """One Arrow column: its values' common type, numbers widened to float, anything mixed as strings."""
    kinds = {type(cell) for cell in cells if cell is not None}
    if kinds == {int, float}:
        return pa.array([None if cell is None else float(cell) for cell in cells], pa.float64())
    if len(kinds) <= 1:
        return pa.array(cells, _ARROW.get(next(iter(kinds), str)))
    return pa.array([None if cell is None else json.dumps(cell) if not isinstance(cell, str) else cell for cell in cells], pa.string())


_ARROW = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def figure(data: bytes) -> bytes:
    """The PNG's pixels drawn again into a new image: no text chunk, no EXIF, no trailing data survives."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                width, height = image.size
                if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
                    raise OutputRefused(f"a figure is larger than {MAX_SIDE} pixels a side or {MAX_PIXELS} pixels")
                pixels = image.convert("RGBA").tobytes()
    except OutputRefused:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise OutputRefused("a figure output is not a PNG image") from None
    # Flattened onto opaque white: colours under transparent pixels, which a reviewer cannot see, are gone.
    drawn = Image.frombytes("RGBA", (width, height), pixels)
    redrawn = Image.new("RGB", (width, height), (255, 255, 255))
    redrawn.paste(drawn, mask=drawn.getchannel("A"))
    sink = io.BytesIO()
    redrawn.save(sink, format="PNG", optimize=False)
    return sink.getvalue()
