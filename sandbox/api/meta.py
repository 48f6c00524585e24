"""Liveness, the OpenAPI document, and the caller's own identity."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from sandbox import __version__
from sandbox.api.openapi import build_spec
from sandbox.api.routing import ANY_ROLE, declared, endpoint
from sandbox.api.schemas import Health, Me
from sandbox.db import read_session
from sandbox.models import Org
from sandbox.service.auth import Principal


def register(bp: Blueprint) -> None:
    @endpoint(bp, "/healthz", "GET", summary="Liveness and version", roles=None, response=Health)
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    @bp.get("/openapi.json")
    def openapi() -> Response:
        """The document is built once per app, from the endpoints declared on this blueprint."""
        spec: dict[str, Any] | None = current_app.extensions.get("sandbox.openapi")
        if spec is None:
            spec = current_app.extensions["sandbox.openapi"] = build_spec(declared(bp))
        return jsonify(spec)

    @endpoint(bp, "/me", "GET", summary="The caller: user, role and organisation", roles=ANY_ROLE, response=Me, errors=(401,))
    def me(caller: Principal) -> Me:
        org = read_session().get(Org, caller.org_id)
        assert org is not None
        return Me(id=caller.user_id, name=caller.name, role=caller.role, org_id=caller.org_id, org_kind=caller.org_kind, org_name=org.name)


def register_root(app: Flask) -> None:
    """``/healthz`` and ``/openapi.json`` also answer at the root, where load balancers look."""
    app.add_url_rule("/healthz", "healthz", app.view_functions["api.healthz"])
    app.add_url_rule("/openapi.json", "openapi", app.view_functions["api.openapi"])
