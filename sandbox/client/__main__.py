"""``python -m sandbox.client``: the client's commands, usable where only the client is installed."""

import click

from sandbox.client.encrypt_upload import encrypt_upload


@click.group()
def main() -> None:
    """The sandbox's Python client: commands run on the provider's or analyst's own machine."""


main.add_command(encrypt_upload, "encrypt-upload")

main(prog_name="python -m sandbox.client")
