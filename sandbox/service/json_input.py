"""Reading JSON from callers within stated bounds: size, nesting depth, and nothing a parser would guess.

Python's ``json`` parser recurses once per nesting level, and so do the validators, ``NUL`` checks
and encoders that follow it: a body nested a few hundred levels deep ended in ``RecursionError``
(a 500). The C parser guards its own recursion (it raises ``RecursionError``, caught here as "too
deep"); what it returns is then measured by an iterative walk, with no recursion, and refused when
deeper than the limit, before anything recursive sees it. Parsing refuses what JSON leaves open to
interpretation: ``NaN`` and ``Infinity`` literals, numbers that overflow a float (``1e999`` would
become infinity) and duplicate keys (which parsers resolve differently). The size is checked before
parsing. Errors name the limit, never a value of the body.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from core.errors import BadRequest, TooLarge

_CONTAINERS = frozenset({dict, list})  # what json.loads makes of arrays and objects


class JsonTooDeep(BadRequest):
    code = "too_deep"


@dataclass(frozen=True)
class JsonLimits:
    """How large (bytes of UTF-8 text) and how deeply nested (arrays and objects) a JSON document may be."""

    max_bytes: int
    max_depth: int

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_depth < 1:
            raise ValueError("JSON limits must be positive")


def nesting_depth(value: Any, stop_above: int) -> int:
    """How deeply arrays and objects nest in a parsed value (a scalar is 0), walked level by level without recursion.

    Stops counting once past ``stop_above``.
    """
    depth, level = 0, [value] if type(value) in _CONTAINERS else []
    while level and depth <= stop_above:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            if not _CONTAINERS.isdisjoint(map(type, children)):  # a C-speed look first: flat arrays are common
                below.extend([child for child in children if type(child) in _CONTAINERS])
        level = below
    return depth


def load(raw: bytes | str, limits: JsonLimits, what: str) -> Any:
    """The JSON value of ``raw``, or ``TooLarge`` (413) / ``JsonTooDeep`` / ``BadRequest`` (400) naming the limit."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > limits.max_bytes:
        raise TooLarge(
            f"{what} is larger than {limits.max_bytes} bytes (SANDBOX_MAX_JSON_BYTES)",
            details={"limit": "max_json_bytes", "maximum": limits.max_bytes},
        )
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite, object_pairs_hook=_unique_keys)
    except _Refused as exc:
        raise BadRequest(f"{what} is not accepted: {exc}") from None
    except RecursionError:
        raise _too_deep(what, limits) from None
    except ValueError:
        raise BadRequest(f"{what} is not valid JSON") from None
    if nesting_depth(value, limits.max_depth) > limits.max_depth:
        raise _too_deep(what, limits)
    return value


def _too_deep(what: str, limits: JsonLimits) -> JsonTooDeep:
    return JsonTooDeep(
        f"{what} nests arrays and objects deeper than {limits.max_depth} levels",
        details={"limit": "max_json_depth", "maximum": limits.max_depth},
    )


class _Refused(ValueError):
    """Well-formed JSON that the sandbox does not accept; the message is fixed text, never a value."""


def _refuse_constant(_name: str) -> Any:
    raise _Refused("NaN and Infinity are not JSON numbers")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("a number is too large for a 64-bit float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Refused("an object has the same key twice")
    return result
