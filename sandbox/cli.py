"""The command line: ``python -m sandbox init | worker | audit verify | audit verify-export | keys rotate | keys export-public |
he register-key | custodian init|serve | encrypt-upload``.

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
from pathlib import Path

import click
import requests
from flask import Flask
from sqlalchemy import select

from core.errors import BadRequest, Conflict
from crypto import ledger as ledger_crypto
from crypto.ledger_segment import verify_segment
from crypto.paillier import PublicKey
from custodian.cli import main as custodian_main
from sandbox import bootstrap as setup
from sandbox import create_app, keys
from sandbox.app import get_ledger_of, instance_of
from sandbox.client.encrypt_upload import encrypt_upload
from sandbox.db import get_db_of
from sandbox.demo import he_slice as demo_he
from sandbox.demo import passwords as demo_passwords
from sandbox.demo import scoring as demo_scoring
from sandbox.demo import seed as demo
from sandbox.demo import tokens as demo_tokens
from sandbox.models import DomainKey
from sandbox.runtime import child
from sandbox.runtime.worker import Worker
from sandbox.service import he_keys
from sandbox.service.ledger import verify

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
        from_env = os.environ.get("SANDBOX_ADMIN_TOKEN")
        created = setup.initialise(app, admin_token=from_env)
        click.echo(f"instance ready: {app.config['INSTANCE_PATH']}")
        if not with_demo:
            if created.admin_token:
                click.echo(f"admin token (shown once): {created.admin_token}")
            return
        # The demo's tokens go to a file, not the terminal: the tour sources it, and it stays valid.
        path = demo_tokens.path_in(app.config["INSTANCE_PATH"])
        known = demo_tokens.read(path)
        admin = created.admin_token or from_env
        tokens = demo.load(app, SYSTEM, known | ({"admin": admin} if admin else {}))
        demo_scoring.load(app)
        demo_tokens.write(path, tokens)
        names = ", ".join(demo_tokens.VARIABLES[name] for name in tokens)
        fresh = sorted(demo_tokens.VARIABLES[name] for name, token in tokens.items() if known.get(name) != token)
        click.echo(f"demo tokens ({names}) in {path} (mode 0600); new: {', '.join(fresh) or 'none, all kept valid'}")
        click.echo(f"  use them: source {path}")
        # The console's passwords, likewise in a file (mode 0600) and kept while they still sign in.
        path = demo_passwords.path_in(app.config["INSTANCE_PATH"])
        known = demo_passwords.read(path)
        passwords = demo_passwords.load(app, SYSTEM, known)
        demo_passwords.write(path, passwords)
        fresh = sorted(name for name, password in passwords.items() if known.get(name) != password)
        click.echo(f"demo console passwords (logins {', '.join(passwords)}) in {path} (mode 0600); new: {', '.join(fresh) or 'none'}")


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


@audit.command("verify-export")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The domain's public key (PEM) obtained elsewhere (`keys export-public`); default: the one in the export.",
)
def audit_verify_export(export: Path, public_key: Path | None) -> None:
    """Verify an exported ledger segment offline, without the database; exit status 0 only if intact and signed."""
    try:
        segment = json.loads(export.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise click.ClickException(f"{export} is not a ledger export (not JSON: {type(exc).__name__})") from None
    if not isinstance(segment, dict) or segment.get("format") != "sandbox-ledger-segment-v1":
        raise click.ClickException(f"{export} is not a ledger export (format sandbox-ledger-segment-v1)")
    pem = public_key.read_text(encoding="utf-8") if public_key else str(segment.get("public_key_pem") or "")
    public = ledger_crypto.public_from_pem(pem) if pem else None
    if public is None:
        raise click.ClickException("no Ed25519 public key: give --public-key with the domain's PEM")
    events, checkpoints = segment.get("events"), segment.get("checkpoints")
    if not isinstance(events, list) or not isinstance(checkpoints, list) or not all(isinstance(e, dict) for e in events + checkpoints):
        raise click.ClickException(f"{export} is not a ledger export (events and checkpoints are lists of objects)")
    report = verify_segment(events, checkpoints, public)
    click.echo(json.dumps(report.as_dict() | {"public_key_fingerprint": ledger_crypto.fingerprint(public)}, indent=2))
    sys.exit(0 if report.ok else 1)


@main.group("keys")
def keys_group() -> None:
    """Key management."""


@keys_group.command("rotate")
def keys_rotate() -> None:
    """New master key; every data key and domain key re-wrapped; nothing re-encrypted in bulk."""
    with _app() as app:
        store = keys.get_keys_of(app)
        ledger = get_ledger_of(app)
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


@keys_group.command("export-public")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the PEM here instead of standard output.")
def keys_export_public(out: Path | None) -> None:
    """The domain's Ed25519 public key (the ledger signing key), PEM: the key custodian verifies release decisions with it."""
    with _app() as app, get_db_of(app).sessions() as session:
        public = session.scalar(select(DomainKey.public_der).where(DomainKey.kind == keys.SIGNING_KEY_KIND))
    if public is None:
        raise Conflict("the instance has no signing key yet: run `python -m sandbox init`")
    pem = ledger_crypto.public_to_pem(public)
    if out is None:
        click.echo(pem, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(pem)
    click.echo(f"domain public key {ledger_crypto.fingerprint(public)} written to {out}", err=True)


@main.group("he")
def he_group() -> None:
    """Homomorphic jobs: the key custodian's public key."""


@he_group.command("register-key")
@click.option("--from", "url", help="The key custodian's base URL (its GET /public-key is read).")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A public key JSON file.")
def he_register_key(url: str | None, file: Path | None) -> None:
    """Register the custodian's Paillier public key in the domain (he_keys); safe to run again."""
    if (url is None) == (file is None):
        raise BadRequest("give exactly one of --from URL or --file FILE")
    if url is not None:
        try:
            response = requests.get(url.rstrip("/") + "/public-key", timeout=30)
        except requests.RequestException:
            raise BadRequest(f"could not reach the custodian at {url}") from None
        if response.status_code != 200:
            raise BadRequest(f"the custodian answered {response.status_code} at {url}")
        data, source = response.json(), url
    else:
        assert file is not None
        data, source = json.loads(file.read_text()), f"file:{file.resolve()}"
    key = PublicKey.from_dict(data, field="public key")
    with _app() as app, get_db_of(app).writing() as session:
        _, created = he_keys.register(session, get_ledger_of(app), SYSTEM, key, source)
    click.echo(f"paillier key ({key.bits} bits) {'registered' if created else 'already registered'}: fingerprint {key.fingerprint}")


@he_group.command("demo")
def he_demo() -> None:
    """Demo: PUMS with income encrypted under the registered key, and an he grant for the demo analyst."""
    with _app() as app:
        click.echo(json.dumps(demo_he.load(app)))


main.add_command(custodian_main, "custodian")
main.add_command(encrypt_upload, "encrypt-upload")


@main.command()
@click.option("--once", is_flag=True, help="Work until the queue is empty, then exit.")
def worker(once: bool) -> None:
    """Run a job worker; several may run at once, on several machines."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _app() as app:
        runner = Worker(instance_of(app))
        runner.install_signal_handlers()
        try:
            took = child.preflight()
        except child.ChildUnavailable as exc:
            if runner.stopping.is_set():  # stopped while starting: its forkserver got the same signal
                click.echo(f"worker {runner.id} stopped while starting", err=True)
                return
            raise click.ClickException(f"the worker cannot run jobs: {exc}") from None
        click.echo(f"worker {runner.id} started (job child processes ready in {took:.1f} s)", err=True)
        try:
            done = runner.run(once=once)
        except (KeyboardInterrupt, EOFError):
            logging.getLogger("sandbox.worker").exception("worker %s interrupted", runner.id)
            raise
        click.echo(f"worker {runner.id} stopped after {done} jobs", err=True)
