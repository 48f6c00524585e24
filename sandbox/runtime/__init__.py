"""The job runtime: the database queue (claim, lease, heartbeat, finish once), the worker, the executor
that runs a typed job definition, the one pipeline of real and dry runs, and sealed outputs.

May import: ``core``, ``crypto``, ``policies``, ``jobs``, ``sandbox.service`` and the shell's
infrastructure. Never Flask, ``sandbox.api`` or ``sandbox.client``: the worker is not a web app.
"""
