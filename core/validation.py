"""Pydantic validation errors as the API's problems: ``{field, problem}``, in the caller's terms.

Pydantic's own rendering speaks of the code, not of the request: "Input should be a valid dictionary
or instance of JobIn" names an internal class, a union's member shows up in the path
("crosstab.dataset", "domain.0.int"), and a discriminator's message quotes the value sent. Every
place that turns a ``ValidationError`` into ``ValidationFailed`` goes through ``problems`` so that
field paths use the keys of the input and messages name neither classes nor input values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

# Error types whose message names the model class that was expected.
_OBJECT_EXPECTED = frozenset({"model_type", "model_attributes_type", "dataclass_type", "dataclass_exact_type", "is_instance_of"})
_CLASS_NAME = re.compile(r",? or (?:an )?instance of \w+")


def problems(exc: ValidationError, data: Any, prefix: str = "", whole: str = "body") -> list[dict[str, str]]:
    """One ``{"field", "problem"}`` per error. ``field`` is the path in ``data``, after ``prefix`` if given;
    an error about ``data`` as a whole is ``whole``'s."""
    found = []
    for err in exc.errors(include_url=False, include_input=False, include_context=True):
        steps = _path(err, data)
        tag = (err.get("ctx") or {}).get("discriminator")
        if err["type"].startswith("union_tag") and isinstance(tag, str) and re.fullmatch(r"'\w+'", tag):
            steps.append(tag.strip("'"))  # the discriminating field, e.g. "op"
        path = ".".join(steps)
        field = ".".join(p for p in (prefix, path) if p) if path else whole
        found.append({"field": field, "problem": _message(err)})
    return found


def _path(err: Mapping[str, Any], data: Any) -> list[str]:
    """The error's location in the input's own keys: steps that are not in the input (a union member's
    tag, a validator's name) are left out, except the last step of a missing field."""
    loc, node, parts = err["loc"], data, []
    for i, step in enumerate(loc):
        if _holds(node, step):
            node = node[step]
        elif not (i == len(loc) - 1 and err["type"] == "missing"):
            continue
        parts.append(str(step))
    return parts


def _holds(node: Any, step: int | str) -> bool:
    if isinstance(node, Mapping):
        return step in node
    is_list = isinstance(node, Sequence) and not isinstance(node, str | bytes)
    return is_list and isinstance(step, int) and 0 <= step < len(node)


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] in _OBJECT_EXPECTED:
        return "Input should be an object"
    if err["type"] == "union_tag_invalid":
        context = err.get("ctx") or {}
        return f"should be one of {context.get('expected_tags', 'the documented values')}"
    return _CLASS_NAME.sub("", err["msg"])
