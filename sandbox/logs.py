"""Logging that cannot leak data: an unexpected exception is logged by type and stack frames only.

Messages of library exceptions (DuckDB, pyarrow, statsmodels) may quote values from the data they
were working on; the frames say where it failed without saying what the data was.
"""

from __future__ import annotations

import logging
import traceback


def log_unexpected(log: logging.Logger, what: str, exc: BaseException) -> None:
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s: unexpected %s (message withheld: it may quote data)\n%s", what, type(exc).__name__, frames)
