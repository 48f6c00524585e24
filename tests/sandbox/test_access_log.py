"""gunicorn's access log with the console's logger class: a password link's token is never written."""

from __future__ import annotations

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config  # type: ignore[import-untyped]

from sandbox.access_log import AccessLogger

TOKEN = "Zq3-x_9AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab"


def _line(caplog: pytest.LogCaptureFixture, path: str, referer: str) -> str:
    config = Config()
    config.set("accesslog", "-")
    logger = AccessLogger(config)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": referer,
        "HTTP_USER_AGENT": "test",
    }
    request = SimpleNamespace(headers=[("REFERER", referer), ("USER-AGENT", "test")])
    response = SimpleNamespace(status="302 FOUND", sent=0, headers=[("Location", "/sign-in")])
    logger.access_log.propagate = True
    with caplog.at_level(logging.INFO, logger=logger.access_log.name):
        logger.access(response, request, environ, datetime.timedelta(seconds=0, microseconds=1500))
    (record,) = [r for r in caplog.records if r.name == logger.access_log.name]
    return record.getMessage()


def test_the_access_log_writes_no_password_link_token(caplog: pytest.LogCaptureFixture) -> None:
    path = f"/set-password/{TOKEN}"
    line = _line(caplog, path, f"https://sandbox.example{path}")
    assert TOKEN not in line
    assert line.count("/set-password/[redacted]") == 2  # the request line and the Referer of the form's POST
    assert "302" in line


def test_other_paths_are_logged_as_they_are(caplog: pytest.LogCaptureFixture) -> None:
    line = _line(caplog, "/catalogue?q=income", "https://sandbox.example/jobs")
    assert "/catalogue?q=income" in line
    assert "https://sandbox.example/jobs" in line
