"""The key custodian: holds the private Paillier key of the domain and decrypts only what a signed release decision names.

Deployable alone: it imports ``core`` and ``crypto`` only, never the sandbox's database, master key
or services. Its directory (``SANDBOX_CUSTODIAN_DIR``) holds its own master keyring, the Paillier
private key wrapped by it, the domain's Ed25519 public key, and its append-only decryption log.
See ``docs/homomorphic-jobs.md``.
"""
