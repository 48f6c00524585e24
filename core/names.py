"""Dataset and column names: which are accepted, and when two names are the same name.

Names come from stewards (column headers of a bureau's export: ``纳税额``, ``yrs.since.phd``) and are
stored and shown exactly as given. Any printable Unicode is accepted, up to ``MAX_NAME_LENGTH``
characters. Refused, each with a reason that says why:

- the empty name, and names longer than the limit;
- control, format (zero-width, bidirectional overrides), private-use, unassigned and line or
  paragraph separator characters: they are invisible or reorder text, so a name could look like
  another one in a catalogue or an error message;
- leading or trailing whitespace, which no analyst can see;
- names starting with ``__``, the prefix of the sandbox's own columns in generated SQL.

A double quote is allowed: every generated SQL text quotes identifiers, and quoting escapes it
(``"a""b"``); formulas name such a column through ``Q("...")``, whose string is checked as data.

DuckDB matches identifiers without regard to case, quoted or not, so two names that differ only in
case (or only in Unicode normal form) would be one name to a query: ``name_key`` (NFC, then case
folding) says when two names are the same, and a dataset whose columns collide so is refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_NAME_LENGTH = 63
RESERVED_PREFIX = "__"

# Unicode categories a name must not contain: control, format, surrogate, private use, unassigned,
# line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a dataset or column name, or None if it can. The reason never repeats the name."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters ({len(name)})"
    hidden = invisible_character(name)
    if hidden:
        return hidden
    if name != name.strip():
        return "starts or ends with whitespace"
    if name.startswith(RESERVED_PREFIX):
        return f"starts with {RESERVED_PREFIX}, which is reserved for the sandbox's own columns"
    return None


def invisible_character(name: str) -> str | None:
    """Why ``name`` cannot be shown as it is (a control or invisible character), or None. Also checked on analysts' aliases."""
    for char in name:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"contains the control or invisible character U+{ord(char):04X}"
    return None


def name_key(name: str) -> str:
    """The form two names share when a query cannot tell them apart: NFC, then Unicode case folding."""
    return unicodedata.normalize("NFC", name).casefold()


def collisions(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct names with the same ``name_key`` (each later name with the first of its key)."""
    first: dict[str, str] = {}
    found = []
    for name in names:
        key = name_key(name)
        if key in first and first[key] != name:
            found.append((first[key], name))
        first.setdefault(key, name)
    return found


def quote(name: str) -> str:
    """``name`` as a double-quoted SQL identifier, an inner double quote doubled (SQL standard, DuckDB)."""
    return '"' + name.replace('"', '""') + '"'
