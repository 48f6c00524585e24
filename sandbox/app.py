"""The app factory: configuration, database, keys, storage, ledger and the REST API, built from ``app.config``.

Nothing is created at import time; ``wsgi.py`` and the command line call ``create_app``.
"""

from __future__ import annotations

import io
from typing import IO, Any

from flask import Flask, Request


class InMemoryRequest(Request):
    """Keeps uploaded files in memory: Werkzeug would spool large ones to a temporary file on disk,
    and an uploaded dataset's plaintext must never touch disk. ``MAX_CONTENT_LENGTH`` bounds it."""

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None, content_length: int | None = None
    ) -> IO[bytes]:
        return io.BytesIO()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from sandbox import api, config, db, keys, storage
    from sandbox.runtime import custodian as custodian_client
    from sandbox.service.datasets import Datasets, ingest_limits
    from sandbox.service.ledger import Ledger

    app = Flask(__name__, static_folder=None)
    app.request_class = InMemoryRequest
    config.load(app, test_config)
    db.init_app(app)
    keys.init_app(app)
    storage.init_app(app)
    custodian_client.init_app(app)
    ledger = Ledger(keys.get_keys_of(app), int(app.config["LEDGER_CHECKPOINT_EVERY"]))
    app.extensions["sandbox.ledger"] = ledger
    limits = ingest_limits(app.config)
    app.extensions["sandbox.datasets"] = Datasets(db.get_db_of(app), keys.get_keys_of(app), storage.get_store_of(app), ledger, limits)
    api.init_app(app)
    return app
