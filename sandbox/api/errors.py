"""The one place where exceptions become the API's error shape.

``{"error": {"code", "message", "details"}}`` for everything: sandbox errors, HTTP errors raised
by Flask (unknown route, wrong method, body too large) and, last, unexpected exceptions, which
answer a bare 500 and are logged without request data.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core.errors import SandboxError
from sandbox.logs import log_unexpected

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "policy_violation",
    429: "budget_exhausted",
}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, "details": details or {}}}), status


def init_app(app: Flask) -> None:
    @app.errorhandler(SandboxError)
    def _sandbox(exc: SandboxError) -> tuple[Response, int]:
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
            return error_response(500, exc.code, "the server could not complete the request")
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(413, "too_large", f"the request body exceeds the limit of {limit} bytes", {"limit": limit})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return error_response(status, HTTP_CODES.get(status, "error"), exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log_unexpected(log, "request", exc)
        return error_response(500, "internal_error", "the server could not complete the request")
