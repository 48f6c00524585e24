"""The command line: ``python -m sandbox init | audit verify | keys rotate``.

Configuration comes from ``SANDBOX_*`` environment variables, as for the server. Secrets are
printed to standard output only where the operator asked for them (tokens at init), never logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask
from sqlalchemy import select

from crypto import ledger as ledger_crypto
from sandbox import create_app, demo, keys, setup
from sandbox.db import get_db_of
from sandbox.ledger import Ledger, verify
from sandbox.models import DomainKey
from sandbox.worker import Worker

SYSTEM = setup.SYSTEM


@click.group()
def main() -> None:
    """Authorized data-operation sandbox: 原始数据不出域、数据可用不可见."""


@contextmanager
def _app() -> Iterator[Flask]:
    """An app configured from the environment; its database connections close when the command ends."""
    app = create_app()
    try:
        yield app
    finally:
        get_db_of(app).engine.dispose()


@main.command()
@click.option("--demo", "with_demo", is_flag=True, help="Also load demo organisations, users, datasets and a grant.")
def init(with_demo: bool) -> None:
    """Create the instance (schema, master key, signing key, admin); safe to run again."""
    with _app() as app:
        created = setup.initialise(app, admin_token=os.environ.get("SANDBOX_ADMIN_TOKEN"))
        click.echo(f"instance ready: {app.config['INSTANCE_PATH']}")
        if created.admin_token:
            click.echo(f"admin token (shown once): {created.admin_token}")
        if with_demo:
            tokens = demo.load(app, SYSTEM, created.admin_token is None)
            click.echo("demo tokens (new on every run; earlier demo tokens are revoked):")
            for name, token in tokens.items():
                click.echo(f"  {name:8} {token}")


@main.group()
def audit() -> None:
    """The audit ledger."""


@audit.command("verify")
def audit_verify() -> None:
    """Verify the ledger; exit status 0 only if intact."""
    with _app() as app, get_db_of(app).sessions() as session:
        public = session.scalar(select(DomainKey.public_der).where(DomainKey.kind == keys.SIGNING_KEY_KIND))
        report = verify(session, public)
    out = report.as_dict() | {"public_key_fingerprint": ledger_crypto.fingerprint(public) if public else None}
    click.echo(json.dumps(out, indent=2))
    sys.exit(0 if report.ok else 1)


@main.group("keys")
def keys_group() -> None:
    """Key management."""


@keys_group.command("rotate")
def keys_rotate() -> None:
    """New master key; every data key and domain key re-wrapped; nothing re-encrypted in bulk."""
    with _app() as app:
        store = keys.get_keys_of(app)
        ledger: Ledger = app.extensions["sandbox.ledger"]
        old = store.load().current
        with get_db_of(app).writing() as session:
            result = keys.rotate(session, store)
            ledger.append(
                session,
                actor=SYSTEM,
                action="keys.rotate",
                object_type="master_key",
                object_id=str(result["master_key_id"]),
                details={"previous": old, "rewrapped": result["rewrapped"]},
            )
        retired = keys.retire_old_keys(store)
    click.echo(json.dumps({**result, "retired": retired}))


@main.command()
@click.option("--once", is_flag=True, help="Work until the queue is empty, then exit.")
def worker(once: bool) -> None:
    """Run a job worker; several may run at once, on several machines."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _app() as app:
        runner = Worker(app)
        runner.install_signal_handlers()
        click.echo(f"worker {runner.id} started", err=True)
        done = runner.run(once=once)
        click.echo(f"worker {runner.id} stopped after {done} jobs", err=True)
