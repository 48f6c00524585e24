"""Pure cryptography of the sandbox: chunked AES-256-GCM envelopes for dataset files at rest,
data keys wrapped by the master key, and hashing and Ed25519 signing of the audit ledger.

This package performs no I/O beyond the file objects it is handed, keeps no state, and imports
nothing from the web, database or service layers; every primitive comes from pycryptodome.
"""
