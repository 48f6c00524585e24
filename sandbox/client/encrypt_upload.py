"""``encrypt-upload``: a provider encrypts sensitive columns locally and uploads the dataset.

Reached as ``python -m sandbox.client encrypt-upload`` where only the client is installed, and as
``python -m sandbox encrypt-upload`` beside the server's commands. The API token comes from
``SANDBOX_TOKEN`` or ``--token-file``, never from the command line (argv is visible to every user of
the machine in ``ps``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from sandbox.client import ApiError, Client
from sandbox.client.provider import EncryptionError, parse_column_option


@click.command()
@click.option("--url", default=lambda: os.environ.get("SANDBOX_URL", "http://127.0.0.1:8000"), show_default="SANDBOX_URL or local")
@click.option("--file", "file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV or Parquet")
@click.option("--meta", "meta", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="dataset meta JSON")
@click.option("--encrypt", "columns", required=True, multiple=True, help="COLUMN or COLUMN:SCALE (decimal digits kept); repeat")
@click.option("--key", "key", help="The fingerprint of the domain's Paillier key you expect (pins it).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A file holding the API token.")
def encrypt_upload(url: str, file: Path, meta: Path, columns: tuple[str, ...], key: str | None, token_file: Path | None) -> None:
    """Encrypt columns of FILE under the domain's Paillier key on this machine, then upload it as a new dataset."""
    token = token_file.read_text().strip() if token_file is not None else os.environ.get("SANDBOX_TOKEN", "")
    if not token:
        raise click.UsageError("no API token: set SANDBOX_TOKEN or pass --token-file")
    try:
        chosen = dict(parse_column_option(c) for c in columns)
        dataset = Client(url, token).upload_encrypted(file, json.loads(meta.read_text()), chosen, key)
    except (EncryptionError, ApiError) as exc:
        raise click.ClickException(str(exc)) from None
    encrypted = {name: spec["paillier"] for name, spec in dataset["columns"].items() if spec.get("paillier")}
    click.echo(json.dumps({"id": dataset["id"], "name": dataset["name"], "rows": dataset["row_count"], "encrypted": encrypted}))
