"""The sandbox: the service shell around the pure packages (``core``, ``crypto``, ``policies``, ``jobs``).

Sub-packages by responsibility; arrows point down only (``tests/test_architecture.py`` checks them):

- ``sandbox.api``      HTTP only: routes, request and response models, errors, the OpenAPI document;
- ``sandbox.service``  the domain's services: identity, datasets, grants, consents, budget, jobs, reviews, ledger;
- ``sandbox.runtime``  the job queue, the worker, the executor and the one pipeline of real and dry runs;
- ``sandbox.client``   the Python client and the providers' tools: no server dependency at all;
- ``sandbox.demo``     the demo organisations, datasets and grants of ``make run``;
- the modules here: the app factory (``app``), configuration, the metadata database and its models,
  the master keyring, encrypted storage, migrations, the command line.

Importing ``sandbox`` imports nothing heavy, so that ``sandbox.client`` stands alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__version__ = "0.1.0"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The WSGI app (``sandbox.app.create_app``), imported only when called."""
    from sandbox.app import create_app as factory

    return factory(test_config)
