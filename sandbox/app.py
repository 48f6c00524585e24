"""The app factory: configuration, database, keys, storage, ledger, the REST API and the web console, built from ``app.config``.

Nothing is created at import time; ``wsgi.py`` and the command line call ``create_app``.
"""

from __future__ import annotations

import io
from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Request

if TYPE_CHECKING:
    from sandbox.instance import Instance
    from sandbox.service.datasets import Datasets
    from sandbox.service.ledger import Ledger


class InMemoryRequest(Request):
    """Keeps uploaded files in memory: Werkzeug would spool large ones to a temporary file on disk,
    and an uploaded dataset's plaintext must never touch disk. ``MAX_CONTENT_LENGTH`` bounds it."""

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None, content_length: int | None = None
    ) -> IO[bytes]:
        return io.BytesIO()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from sandbox import api, config, console, db
    from sandbox.instance import Instance

    app = Flask(__name__, static_folder=None)
    app.request_class = InMemoryRequest
    config.load(app, test_config)
    # Flask reads this from app.json, not from the config: a released table's rows keep the query's column order.
    app.json.sort_keys = bool(app.config["JSON_SORT_KEYS"])  # type: ignore[attr-defined]
    app.extensions.update(Instance.from_config(app.config).extensions())
    db.init_app(app)
    api.init_app(app)
    console.init_app(app)
    return app


def get_ledger_of(app: Flask) -> Ledger:
    """The ledger service that ``create_app`` built for ``app``."""
    found: Ledger = app.extensions["sandbox.ledger"]
    return found


def get_datasets_of(app: Flask) -> Datasets:
    """The datasets service that ``create_app`` built for ``app``."""
    found: Datasets = app.extensions["sandbox.datasets"]
    return found


def instance_of(app: Flask) -> Instance:
    """The services ``app`` holds now, for a ``Worker`` in the same process (the command line, tests)."""
    from sandbox.instance import Instance

    return Instance.of_extensions(app.extensions, app.config)
