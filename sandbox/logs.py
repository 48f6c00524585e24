"""Logging that cannot leak data: an unexpected exception is logged by type and stack frames only.

Messages of library exceptions (DuckDB, pyarrow, statsmodels) may quote values from the data they
were working on; the frames say where it failed without saying what the data was. A job's child
process sends its failure to the parent in the same form (type name and frames), never the message.
"""

from __future__ import annotations

import logging
import traceback


def frames_of(exc: BaseException) -> str:
    """The stack frames of ``exc``: file, line, function and source line, never the exception's message."""
    return "".join(traceback.format_tb(exc.__traceback__))


def log_unexpected(log: logging.Logger, what: str, exc: BaseException) -> None:
    log_child_failure(log, what, type(exc).__name__, frames_of(exc))


def log_child_failure(log: logging.Logger, what: str, type_name: str, frames: str) -> None:
    """Log a failure known by its type name and frames (e.g. from a job's child process)."""
    log.error("%s: unexpected %s (message withheld: it may quote data)\n%s", what, type_name, frames)
