"""The one place where exceptions become the API's error shape.

``{"error": {"code", "message", "details"}}`` for everything: sandbox errors, HTTP errors raised
by Flask (unknown route, wrong method, body too large) and, last, unexpected exceptions, which
answer a bare 500 and are logged without request data.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
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
        return error_response(413, "too_large", *_exceeded_limit())

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return error_response(status, HTTP_CODES.get(status, "error"), exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log_unexpected(log, "request", exc)
        return error_response(500, "internal_error", "the server could not complete the request")


def _exceeded_limit() -> tuple[str, dict[str, Any]]:
    """Which bound Werkzeug enforced: the request's body limit (JSON bodies have their own), or a form field's."""
    body_limit, length = request.max_content_length, request.content_length
    if request.mimetype == "multipart/form-data" and length is not None and body_limit and length <= body_limit:
        field_limit, parts = current_app.config["MAX_FORM_MEMORY_SIZE"], current_app.config["MAX_FORM_PARTS"]
        message = f"a form field is larger than {field_limit} bytes (SANDBOX_MAX_JSON_BYTES), or the form has more than {parts} parts"
        return message, {"limit": "max_json_bytes", "maximum": field_limit}
    name = "SANDBOX_MAX_JSON_BYTES" if request.is_json else "SANDBOX_MAX_UPLOAD_BYTES"
    details = {"limit": name.removeprefix("SANDBOX_").lower(), "maximum": body_limit}
    return f"the request body exceeds the limit of {body_limit} bytes ({name})", details
