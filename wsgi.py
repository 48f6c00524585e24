"""WSGI entry point: ``gunicorn wsgi:app``.

Each web process starts its forkserver for dry runs in the background as it boots (the first start
imports the heavy modules, seconds of work), so that the first dry run does not wait for it and a
forkserver that cannot start is in the log at once, not at the first dry run.
"""

import logging
import threading

from sandbox import create_app
from sandbox.runtime import child

log = logging.getLogger("sandbox.wsgi")


def _warm_up() -> None:
    try:
        took = child.preflight()
    except child.ChildUnavailable as exc:
        log.error("dry runs will fail in this web process: %s", exc)
    else:
        log.info("dry-run child processes ready in %.1f s", took)


app = create_app()
threading.Thread(target=_warm_up, name="dry-run-warm-up", daemon=True).start()
