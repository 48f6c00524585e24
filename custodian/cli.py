"""``custodian init`` and ``custodian serve``, mounted under ``python -m sandbox custodian`` too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import gunicorn  # type: ignore[import-untyped]

from core.errors import Conflict
from crypto import paillier
from custodian.config import Settings
from custodian.vault import Vault

ROOT = Path(__file__).resolve().parents[1]


@click.group()
def main() -> None:
    """The key custodian of homomorphic jobs: decrypts only cells a signed release decision names."""


@main.command()
@click.option("--bits", type=click.Choice([str(b) for b in paillier.KEY_SIZES]), default=str(paillier.DEFAULT_KEY_SIZE), show_default=True)
def init(bits: str) -> None:
    """Create the custodian's directory, master keyring and Paillier key pair; safe to run again."""
    settings = Settings.from_env()
    public, created = Vault(settings).init(int(bits))
    if not created and public.bits != int(bits):
        click.echo(f"a {public.bits}-bit key exists already; --bits {bits} is ignored", err=True)
    click.echo(f"custodian directory: {settings.directory}")
    click.echo(f"paillier key ({public.bits} bits) {'created' if created else 'exists'}: fingerprint {public.fingerprint}")
    if not settings.domain_key_file.exists():
        # What `make run` (scripts/run.sh) runs next; in production the file is copied over from the domain.
        click.echo(f"next: python -m sandbox keys export-public --out {settings.domain_key_file}", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Serve GET /public-key and POST /decrypt with gunicorn (configuration: SANDBOX_CUSTODIAN_* variables)."""
    settings = Settings.from_env()
    if not Vault(settings).exists():
        raise Conflict(f"the custodian has no key yet: run `python -m sandbox custodian init` (directory {settings.directory})")
    os.environ["SANDBOX_CUSTODIAN_DIR"] = str(settings.directory)  # the same directory, whatever gunicorn's working directory
    args = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT), "--bind", f"{host}:{port}", "--workers", str(workers)]
    if gunicorn.version_info >= (27, 0):
        args.append("--no-control-socket")  # gunicorn's default socket in ~/.gunicorn would clash with the API server's
    os.execv(sys.executable, [*args, "custodian.app:create_app()"])  # noqa: S606 - a fixed command of our own
