"""The Python client of the sandbox's REST API, and the data providers' tools (encryption before upload).

Owns: ``Client`` (``api_client``), consent-bound scoring on the analyst's side (``scoring``), Paillier
encryption of chosen columns on the provider's machine (``provider``), ``encrypt-upload`` (``encrypt_upload``).
May import: ``core``, ``crypto`` (Paillier only), requests, pandas, pyarrow, tqdm, phe, gmpy2 (and click for
the command). Never Flask, SQLAlchemy, DuckDB, OpenDP or another ``sandbox`` package: a client installs and
imports without the server's dependencies.
"""

from sandbox.client.api_client import ApiError, Client, JobNotReleased, to_frame

__all__ = ["ApiError", "Client", "JobNotReleased", "to_frame"]
