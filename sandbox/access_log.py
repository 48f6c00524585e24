"""gunicorn's access log without the console's one-time password links.

A password link (``/set-password/<token>``, ``sandbox.service.people``) carries its token in the
path: gunicorn's access log would write it in the request line, the path and the ``Referer`` of the
form's own POST. Whoever reads the log before the person has used the link could set the password
and take the account. ``AccessLogger`` writes every such token as ``[redacted]``; serve with
``gunicorn --logger-class sandbox.access_log.AccessLogger``.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

LINK = re.compile(r"(/set-password/)[^/?#\s\"]+", re.IGNORECASE)
REDACTED = r"\1[redacted]"


def redacted(value: str) -> str:
    """``value`` with the token of every password link in it replaced."""
    return LINK.sub(REDACTED, value)


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with password-link tokens removed from every atom of the access log."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {key: redacted(value) if isinstance(value, str) else value for key, value in found.items()}
