"""The REST API, version 1: one blueprint under ``/api/v1``, one module per resource."""

from __future__ import annotations

from flask import Blueprint, Flask

API_PREFIX = "/api/v1"


def init_app(app: Flask) -> None:
    from sandbox.api import audit, consents, datasets, errors, grants, he, identity, jobs, openapi, reviews

    bp = Blueprint("api", __name__, url_prefix=API_PREFIX)
    for module in (openapi, identity, datasets, grants, consents, jobs, reviews, audit, he):
        module.register(bp)
    app.register_blueprint(bp)
    openapi.register_root(app)
    errors.init_app(app)
