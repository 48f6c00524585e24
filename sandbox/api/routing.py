"""Declaring an endpoint once: route, roles, request and response models.

``@endpoint`` authenticates the caller, checks the role, parses the JSON body or query string into
a pydantic model (bad input is a 400 naming the field; JSON within ``json_limits``), and records everything the OpenAPI
document needs, so that the document is generated from the same declarations that enforce them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel

from core.errors import BadRequest, Forbidden, NotFound
from core.values import Role
from sandbox.db import read_session
from sandbox.service import json_input
from sandbox.service.auth import Principal, authenticate
from sandbox.service.json_input import JsonLimits
from sandbox.service.validation import parse_model

ANY_ROLE = frozenset(Role)


@dataclass(frozen=True)
class Endpoint:
    blueprint: str
    rule: str
    method: str
    view: str
    summary: str
    roles: frozenset[Role] | None  # None: no token needed
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    multipart: dict[str, str] | None = None  # part name -> description
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default=())


def declared(bp: Blueprint) -> list[Endpoint]:
    """The endpoints declared on a blueprint, in declaration order."""
    found: list[Endpoint] = bp.__dict__.setdefault("sandbox_endpoints", [])
    return found


def json_limits() -> JsonLimits:
    """The app's bounds on JSON bodies and JSON form fields (``SANDBOX_MAX_JSON_BYTES``, ``SANDBOX_MAX_JSON_DEPTH``)."""
    return JsonLimits(max_bytes=int(current_app.config["MAX_JSON_BYTES"]), max_depth=int(current_app.config["MAX_JSON_DEPTH"]))


def _json_body() -> Any:
    """The body's JSON value, read only up to the JSON size limit (a larger body is 413 before it is read)."""
    if not request.is_json:
        raise BadRequest("expected a JSON body (Content-Type: application/json)")
    limits = json_limits()
    request.max_content_length = min(limits.max_bytes, request.max_content_length or limits.max_bytes)
    data = json_input.load(request.get_data(cache=True), limits, "the body")
    if has_nul(data):
        raise BadRequest("text in the body may not contain NUL characters")
    return data


def has_nul(value: Any) -> bool:
    """NUL cannot be stored in PostgreSQL text: refuse it at the edge, for every backend alike."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def endpoint(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    roles: frozenset[Role] | None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    multipart: dict[str, str] | None = None,
    errors: tuple[int, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view. The view gets ``caller`` (a Principal, when roles is set), ``body``, ``query``."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        spec = Endpoint(bp.name, rule, method, view.__name__, summary, roles, body, query, response, status, multipart, errors, (bp.name,))
        declared(bp).append(spec)

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> tuple[Response, int] | Response:
            if has_nul(list(kwargs.values())):
                raise NotFound("no such object")
            if has_nul(request.args.to_dict()):
                raise BadRequest("query parameters may not contain NUL characters")
            if roles is not None:
                caller: Principal = authenticate(read_session(), request.headers.get("Authorization", ""))
                if caller.role not in roles:
                    raise Forbidden(f"the {caller.role.value} role may not do this")
                kwargs["caller"] = caller
            if query is not None:
                kwargs["query"] = parse_model(query, request.args.to_dict(), "query parameters")
            if body is not None:
                kwargs["body"] = parse_model(body, _json_body(), "request body")
            result = view(**kwargs)
            if isinstance(result, Response):
                return result
            if isinstance(result, BaseModel):
                result = result.model_dump(mode="json")
            return jsonify(result), status

        bp.add_url_rule(rule, view.__name__, wrapper, methods=[method])
        return wrapper

    return decorate
