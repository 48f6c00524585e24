"""Hostile bodies are 4xx: a corpus of odd JSON sent to every POST operation of the OpenAPI document.

Each JSON operation gets each odd body; each multipart operation gets a valid file with each odd
body as its ``meta`` part. Whatever the role's endpoint does with a good body, an odd one must be
a 4xx in the API's error shape, never a 500. Nesting and size have their own stated answers: 400
``too_deep`` and 413 naming the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from urllib3 import encode_multipart_formdata

from core.values import Role
from sandbox.api.routing import declared
from sandbox.service.json_input import JsonLimits, nesting_depth
from tests.conftest import PUMS_META, World, auth
from tests.datafiles import DEMO_DATA
from tests.sandbox.test_openapi import assert_error_shape

DEPTH = 64  # the default SANDBOX_MAX_JSON_DEPTH
JSON_BYTES = 32 * 1024 * 1024  # the default SANDBOX_MAX_JSON_BYTES
ROLE_ORDER = (Role.ADMIN, Role.STEWARD, Role.ANALYST, Role.AUDITOR)
PUMS_CSV = (DEMO_DATA / "pums.csv").read_bytes()
FAKE_ID = "0123456789abcdef0123456789abcdef"


def _nested(depth: int, opening: str, closing: str, inner: str = "1") -> bytes:
    return (opening * depth + inner + closing * depth).encode()


def _in_object(value: bytes) -> bytes:
    """``value`` where a job spec or meta field would be: inside an object of the right shape."""
    return b'{"grant_id": "x", "kind": "query", "spec": ' + value + b', "name": ' + value + b"}"


MALFORMED = {"bad_request", "validation_error"}  # the upload's meta answers validation_error naming the field

# id -> (body, expected status or None for "any 4xx", expected codes or None)
CORPUS: dict[str, tuple[bytes, int | None, set[str] | None]] = {
    "arrays-900-deep": (_nested(900, "[", "]"), 400, {"too_deep"}),
    "objects-900-deep": (_nested(900, '{"a": ', "}"), 400, {"too_deep"}),
    "spec-nested-5000": (_in_object(_nested(5000, "[", "]")), 400, {"too_deep"}),
    "spec-nested-just-over": (_in_object(_nested(DEPTH, "[", "]")), 400, {"too_deep"}),
    "brackets-in-strings-are-text": (_in_object(json.dumps("[" * 5000).encode()), None, None),
    "huge-string": (_in_object(b'"' + b"x" * (JSON_BYTES + 10) + b'"'), 413, {"too_large"}),
    "huge-number": (_in_object(b"1e999"), 400, MALFORMED),
    "long-integer": (_in_object(b"9" * 5000), 400, MALFORMED),
    "nan-literal": (_in_object(b"NaN"), 400, MALFORMED),
    "infinity-literal": (_in_object(b"-Infinity"), 400, MALFORMED),
    "duplicate-keys": (b'{"kind": "query", "kind": "stats", "name": "a", "name": "b"}', 400, MALFORMED),
    "not-utf8": (b'{"name": "\xff\xfe\xfa"}', 400, None),  # form fields are decoded with replacement characters
    "lone-surrogate": (b'{"name": "\\ud800", "spec": {"sql": "\\udfff"}}', None, None),
    "nul-escape": (b'{"name": "a\\u0000b", "spec": {"sql": "\\u0000"}}', None, None),
    "scalar": (b"42", None, None),
    "string": (b'"meta"', None, None),
    "null": (b"null", None, None),
    "array": (b"[]", None, None),
    "empty": (b"", 400, None),
    "truncated": (b'{"name": [1, 2', 400, None),
    "unterminated-string": (b'{"name": "' + b"[" * 1000, 400, None),
    "many-keys": (("{" + ",".join(f'"k{i}": {i}' for i in range(5_000)) + "}").encode(), None, None),
}


def _operations(app: Flask) -> list[tuple[str, str | None, frozenset[Role] | None]]:
    """(path with fake ids, content type or None without a body, roles) of every POST operation the OpenAPI document lists."""
    document = app.test_client().get("/openapi.json").get_json()
    roles = {ep.rule: ep.roles for ep in declared(app.blueprints["api"]) if ep.method == "POST"}
    found = []
    for path, item in document["paths"].items():
        if "post" not in item:
            continue
        content = next(iter(item["post"]["requestBody"]["content"])) if "requestBody" in item["post"] else None
        rule = re.sub(r"\{([^}]+)\}", r"<\1>", path.removeprefix("/api/v1"))
        found.append((_fill(path), content, roles.get(rule)))
    return found


def _fill(path: str) -> str:
    parts = [FAKE_ID if part.startswith("{") else part for part in path.split("/")]
    return "/".join(parts)


def _token(world: World, roles: frozenset[Role] | None) -> dict[str, str]:
    if roles is None:
        return {}
    role = next(r for r in ROLE_ORDER if r in roles)
    return auth(world.token(role.value))


def _send(world: World, path: str, content: str | None, headers: dict[str, str], body: bytes) -> Any:
    if content == "multipart/form-data":
        form, form_type = encode_multipart_formdata({"file": ("pums.csv", PUMS_CSV, "text/csv"), "meta": body})
        return world.client.post(path, headers=headers, data=form, content_type=form_type)
    return world.client.post(path, headers=headers, data=body, content_type=content or "application/json")


@pytest.mark.parametrize("case", list(CORPUS), ids=list(CORPUS))
def test_odd_bodies_are_4xx_on_every_post_operation(app: Flask, world: World, case: str) -> None:
    body, status, code = CORPUS[case]
    operations = _operations(app)
    assert len(operations) > 15
    for path, content, roles in operations:
        response = _send(world, path, content, _token(world, roles), body)
        where = f"{case} -> POST {path}"
        assert 400 <= response.status_code < 500, (where, response.status_code, response.get_json())
        assert_error_shape(response.get_json())
        if content is None:  # an operation without a body (e.g. cancel) ignores it
            continue
        if status is not None:
            assert response.status_code == status, (where, response.get_json())
        if code is not None and response.status_code == status:
            assert response.get_json()["error"]["code"] in code, (where, response.get_json())


def test_the_depth_limit_is_named_and_a_body_at_the_limit_passes(world: World) -> None:
    at_limit = b'{"grant_id": "x", "kind": "query", "spec": ' + _nested(DEPTH - 1, "[", "]") + b"}"
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), data=at_limit, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "validation_error"  # parsed: the model refuses the shape
    over = b'{"grant_id": "x", "kind": "query", "spec": ' + _nested(DEPTH, "[", "]") + b"}"
    response = world.client.post("/api/v1/jobs", headers=auth(world.analyst), data=over, content_type="application/json")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"], error["details"]) == (400, "too_deep", {"limit": "max_json_depth", "maximum": DEPTH})
    assert str(DEPTH) in error["message"]


def test_meta_nested_too_deep_is_refused_before_parsing(world: World) -> None:
    meta = json.dumps({**PUMS_META, "description": None})[:-1] + ', "extra": ' + "[" * 2000 + "]" * 2000 + "}"
    response = _send(world, "/api/v1/datasets", "multipart/form-data", auth(world.steward), meta.encode())
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "too_deep"


def test_a_json_body_over_the_size_limit_is_413_before_it_is_read(app: Flask, world: World) -> None:
    app.config["MAX_JSON_BYTES"] = 1000
    body = json.dumps({"name": "x" * 2000, "kind": "bureau"}).encode()
    response = world.client.post("/api/v1/orgs", headers=auth(world.admin), data=body, content_type="application/json")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (413, "too_large")
    assert "1000 bytes (SANDBOX_MAX_JSON_BYTES)" in error["message"]


@pytest.mark.parametrize(("text", "depth"), [("1", 0), ("[]", 1), ('[{"a": [1]}, 2]', 3), ('"[[[["', 0), ('{"a": {}, "b": [[[]]]}', 4)])
def test_nesting_depth_counts_arrays_and_objects(text: str, depth: int) -> None:
    assert nesting_depth(json.loads(text), 100) == depth


def test_nesting_depth_walks_without_recursion() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert nesting_depth(value, 10**6) == 100_001


def test_json_limits_are_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        JsonLimits(max_bytes=0, max_depth=10)
