"""Configuration: defaults, then the instance's ``sandbox.cfg`` file, then ``SANDBOX_*`` variables.

Code reads settings only from ``app.config``; nothing is copied into module globals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

DEFAULTS: dict[str, Any] = {
    # Uploads above this answer 413. The whole upload is held in memory (plaintext never touches
    # disk), so this also bounds the memory one upload can take.
    "MAX_UPLOAD_BYTES": 512 * 1024 * 1024,
    # What one uploaded table may decode to, checked while reading (Parquet metadata first, then
    # batch by batch; CSV in a streaming pass), so that a small compressed file of millions of
    # identical rows is refused (413) before it is materialised. An upload at these limits holds
    # about three times MAX_UPLOAD_DECODED_BYTES at its peak (decoded, cast, re-encoded).
    "MAX_UPLOAD_ROWS": 20_000_000,
    "MAX_UPLOAD_COLUMNS": 1_000,
    "MAX_UPLOAD_CELLS": 100_000_000,
    "MAX_UPLOAD_DECODED_BYTES": 1024 * 1024 * 1024,
    # JSON bodies and the upload's ``meta`` field: at most this many bytes (413 beyond; 32 MiB holds
    # a scoring job over a million 18-character identifiers) and this deep a nesting of arrays and
    # objects (400 beyond; the deepest valid body, a policy, nests 5 levels). Depth is checked
    # before parsing, whose recursion a deeper body would exhaust.
    "MAX_JSON_BYTES": 32 * 1024 * 1024,
    "MAX_JSON_DEPTH": 64,
    # A signed checkpoint after every N ledger events. 1 signs every event, so that deleting the
    # newest events is always detected against a signature (cost: one Ed25519 signature each).
    "LEDGER_CHECKPOINT_EVERY": 1,
    # Rows of mock data an analyst may ask for at once.
    "MOCK_MAX_ROWS": 1_000,
    # A worker renews its lease on a job every third of this; a worker silent for longer than the
    # lease is presumed dead and its job is claimed again (at most JOB_MAX_ATTEMPTS claims).
    "WORKER_LEASE_SECONDS": 30,
    # How often an idle worker looks for work. Short, so that a job starts as soon as it arrives.
    "WORKER_POLL_SECONDS": 0.05,
    "JOB_MAX_ATTEMPTS": 3,
    # DuckDB's working memory per job (hash tables, sorts, results; the decrypted tables come on
    # top). The engine never spills to disk, where it would write plaintext: a job past this fails
    # with "the job exceeded its memory limit". Dry runs in the web process have the same bound.
    "JOB_MEMORY_MB": 4096,
    "JOB_TIMEOUT_SECONDS": 600,
    # Each job runs in a child process whose address space (RLIMIT_AS) is capped here; DuckDB gets a
    # quarter of it. DuckDB, pyarrow's allocator and the thread stacks reserve about 2.5 GB of address
    # space before any work (measured), so values much below 4 GiB leave a job no room. A runaway job
    # fails ("the job exceeded its memory limit") instead of taking the machine's memory.
    "JOB_MEMORY_BYTES": 6 * 2**30,
    # Dry runs run in the same kind of child process, with tighter limits, so that a heavy one answers
    # 422 quickly (code ``timeout``) and never ties up the web worker that serves it.
    "DRY_RUN_TIMEOUT_SECONDS": 10,
    "DRY_RUN_MEMORY_BYTES": 4 * 2**30,
    # A dry run whose answer could have more cells than this (its dimensions' distinct values,
    # margins included, times its aggregates) answers 422 ``too_expensive`` before it runs.
    "DRY_RUN_MAX_CELLS": 20_000,
    "JSON_SORT_KEYS": False,
    # The catalogue's row and unit counts, as analysts see them, are rounded to a multiple of this: an
    # exact count would answer "is this person in the data?" beside COUNT(*) WHERE <everyone else>.
    # The owning bureau's stewards and auditors see exact counts.
    "CATALOGUE_COUNT_BASE": 10,
    # The web console (``sandbox.console``). Chinese first; dates in the domain's time zone.
    "BABEL_DEFAULT_LOCALE": "zh_CN",
    "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
    # Session cookies: not readable by scripts (HttpOnly; the threat: a script injected into a page
    # stealing the session), not sent on cross-site subrequests or POSTs (SameSite=Lax; the threat:
    # cross-site request forgery, also refused by the CSRF token), signed with SECRET_KEY (from
    # ``<instance>/console-secret.key`` unless set). Marked Secure on every HTTPS request; set
    # SANDBOX_SESSION_COOKIE_SECURE=true behind a TLS-terminating proxy, where requests arrive as HTTP.
    "SESSION_COOKIE_NAME": "sandbox_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    # Guessing passwords: after this many failures in a row a login name is locked for a while
    # (the same for names without an account, so that the answer never tells who has one).
    "CONSOLE_MAX_FAILED_SIGNINS": 5,
    "CONSOLE_LOCKOUT_SECONDS": 15 * 60,
    "CONSOLE_MIN_PASSWORD_LENGTH": 12,
    # How long a one-time password link the admin issues stays usable.
    "PASSWORD_LINK_SECONDS": 24 * 3600,
}


def load(app: Flask, overrides: dict[str, Any] | None) -> None:
    """Fill ``app.config``. Test overrides win over everything, so tests never read the environment."""
    app.config.update(DEFAULTS)
    if overrides is None:
        app.config.from_prefixed_env(prefix="SANDBOX")
        instance = Path(os.environ.get("SANDBOX_INSTANCE_PATH") or app.config.get("INSTANCE_PATH") or "instance")
        app.config["INSTANCE_PATH"] = str(instance.resolve())
        app.config.from_pyfile(str(instance / "sandbox.cfg"), silent=True)
        app.config.from_prefixed_env(prefix="SANDBOX")
    else:
        app.config.update(overrides)
    instance = Path(app.config["INSTANCE_PATH"])
    app.config.setdefault("DATABASE_URL", f"sqlite:///{instance / 'sandbox.db'}")
    app.config.setdefault("MASTER_KEY_FILE", str(instance / "master.key"))
    app.config["INSTANCE_PATH"] = str(instance)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_BYTES"])
    app.config["MAX_FORM_MEMORY_SIZE"] = int(app.config["MAX_JSON_BYTES"])  # the largest non-file form field
