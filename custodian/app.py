"""The custodian's HTTP service: ``GET /public-key`` and ``POST /decrypt``.

``/decrypt`` takes ``{decision, signature, ciphertexts: [{row, column, ciphertext}]}`` and decrypts
only when every check passes; any failed check refuses the whole request (403) and decrypts
nothing:

1. the signature verifies with the domain's Ed25519 public key (``SANDBOX_CUSTODIAN_DOMAIN_KEY``);
2. the decision names this custodian's key (fingerprint);
3. the decision is recent (``SANDBOX_CUSTODIAN_MAX_AGE``) and not issued in the future;
4. every ciphertext sent is named by the decision, row and column, with a matching SHA-256.

It answers the mantissas (decimal strings, mod n) and appends one line per request to its log:
the job, the decision's digest and the number of cells, or the refusal's reason; never a value,
a ciphertext or a key. Errors have the sandbox API's shape: ``{"error": {code, message, details}}``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException

from core.errors import BadRequest, Forbidden, SandboxError, ValidationFailed
from crypto import ledger as ledger_crypto
from crypto import paillier
from crypto import release_decision as decisions
from custodian.config import CLOCK_SKEW_SECONDS, Settings
from custodian.vault import Vault, append_log

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024 * 1024
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Unavailable(SandboxError):
    code = "unavailable"
    status = 503


class Refused(Forbidden):
    """A check failed; ``reason`` is the short code written to the log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DecisionCell(_Strict):
    row: Annotated[int, Field(ge=0)]
    column: Annotated[str, Field(min_length=1, max_length=200)]
    sha256: Hex64


class Decision(_Strict):
    job_id: Annotated[str, Field(min_length=1, max_length=64)]
    key: Hex64
    cells: Annotated[list[DecisionCell], Field(min_length=1, max_length=decisions.MAX_CELLS)]
    issued_at: Annotated[str, Field(min_length=1, max_length=64)]


class CiphertextIn(_Strict):
    row: Annotated[int, Field(ge=0)]
    column: Annotated[str, Field(min_length=1, max_length=200)]
    ciphertext: Annotated[str, Field(min_length=1, max_length=2_000, pattern=r"^[0-9]+$")]


class DecryptIn(_Strict):
    decision: Decision
    signature: Annotated[str, Field(min_length=1, max_length=200)]
    ciphertexts: Annotated[list[CiphertextIn], Field(min_length=1)]


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["JSON_SORT_KEYS"] = False
    vault = Vault(settings)
    app.extensions["custodian.settings"] = settings
    app.extensions["custodian.vault"] = vault

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "key": vault.public().fingerprint if vault.exists() else None})

    @app.get("/public-key")
    def public_key() -> Response:
        return jsonify(vault.public().as_dict())

    @app.post("/decrypt")
    def decrypt() -> Response:
        raw = request.get_json(silent=True)
        if not isinstance(raw, dict):
            raise BadRequest("expected a JSON object {decision, signature, ciphertexts}")
        try:
            body = DecryptIn.model_validate(raw)
        except ValidationError as exc:
            problems = [
                {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors(include_input=False, include_url=False)
            ]
            raise ValidationFailed(
                f"invalid request: {problems[0]['field']}: {problems[0]['problem']}", details={"problems": problems}
            ) from None
        if len(body.ciphertexts) > settings.max_cells:
            raise BadRequest(f"at most {settings.max_cells} ciphertexts per request", details={"field": "ciphertexts"})
        try:
            ciphertexts = authorise(settings, vault, raw["decision"], body)
        except Refused as exc:
            append_log(settings.log_file, {"ts": _now().isoformat(), "outcome": "refused", "reason": exc.reason})
            raise
        mantissas = vault.decrypt(ciphertexts)
        digest = decisions.decision_digest(raw["decision"])
        entry = {"ts": _now().isoformat(), "outcome": "decrypted", "job_id": body.decision.job_id, "key": body.decision.key}
        append_log(settings.log_file, entry | {"decision_sha256": digest, "cells": len(mantissas)})
        plaintexts = [{"row": c.row, "column": c.column, "mantissa": str(m)} for c, m in zip(body.ciphertexts, mantissas, strict=True)]
        return jsonify({"job_id": body.decision.job_id, "key": body.decision.key, "decision_sha256": digest, "plaintexts": plaintexts})

    _errors(app)
    return app


def authorise(settings: Settings, vault: Vault, raw_decision: dict[str, Any], body: DecryptIn) -> list[int]:
    """The ciphertexts as integers, once every check passed; ``Refused`` (403) at the first that fails."""
    domain_key = _domain_key(settings)
    if not decisions.verify(domain_key, raw_decision, body.signature):
        raise Refused("bad_signature", "the release decision's signature does not verify with the domain's key")
    public = vault.public()
    decision = body.decision
    if decision.key != public.fingerprint:
        raise Refused("foreign_key", "the release decision is for another key than this custodian's")
    issued = decisions.issued_at(raw_decision)
    now = _now()
    if issued is None:
        raise Refused("bad_time", "the release decision has no valid issued_at (ISO 8601 with an offset)")
    if issued > now + timedelta(seconds=CLOCK_SKEW_SECONDS):
        raise Refused("future", "the release decision is issued in the future")
    if now - issued > timedelta(seconds=settings.max_age_seconds):
        raise Refused("stale", f"the release decision is older than {settings.max_age_seconds} seconds")
    named = {(c.row, c.column): c.sha256 for c in decision.cells}
    if len(named) != len(decision.cells):
        raise BadRequest("the release decision names a cell twice", details={"field": "decision.cells"})
    seen: set[tuple[int, str]] = set()
    values = []
    for item in body.ciphertexts:
        where = (item.row, item.column)
        if where in seen:
            raise BadRequest(f"row {item.row}, column {item.column} is sent twice", details={"field": "ciphertexts"})
        seen.add(where)
        expected = named.get(where)
        if expected is None:
            raise Refused("not_in_decision", f"row {item.row}, column {item.column} is not named by the release decision")
        c = paillier.parse_ciphertext(public, item.ciphertext, f"ciphertexts[row {item.row}, column {item.column}]")
        if paillier.digest([paillier.to_bytes(public, c)]) != expected:
            raise Refused("digest_mismatch", f"the ciphertext of row {item.row}, column {item.column} is not the one the decision names")
        values.append(c)
    return values


def _domain_key(settings: Settings) -> bytes:
    try:
        text = settings.domain_key_file.read_text()
    except (FileNotFoundError, PermissionError):
        raise Unavailable("the custodian does not know the domain's public key (SANDBOX_CUSTODIAN_DOMAIN_KEY)") from None
    der = ledger_crypto.public_from_pem(text)
    if der is None:
        raise Unavailable("the domain's public key file is not an Ed25519 public key in PEM")
    return der


def _now() -> datetime:
    return datetime.now(UTC)


def _errors(app: Flask) -> None:
    def shape(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> tuple[Response, int]:
        return jsonify({"error": {"code": code, "message": message, "details": details or {}}}), status

    @app.errorhandler(SandboxError)
    def _sandbox(exc: SandboxError) -> tuple[Response, int]:
        if exc.status >= 500 and not isinstance(exc, Unavailable):
            log.error("%s: %s", type(exc).__name__, exc.message)
            return shape(500, exc.code, "the custodian could not complete the request")
        return shape(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return shape(
            status, {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(status, "bad_request"), exc.description or exc.name
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.error("unexpected %s in a request", type(exc).__name__)  # no message: it could hold request data
        return shape(500, "internal_error", "the custodian could not complete the request")
