"""``python -m sandbox``: the command line."""

import signal
import sys
from types import FrameType

if sys.argv[1:2] == ["worker"]:
    # A worker told to stop while it is still importing (seconds on a busy machine) has claimed nothing:
    # it ends at once and cleanly, exit status 0. Its own handlers (finish the job in hand, then stop)
    # replace this one before it claims anything.
    def _stopped_while_starting(signum: int, frame: FrameType | None) -> None:
        print("worker stopped while starting", file=sys.stderr)
        sys.exit(0)

    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped_while_starting)

from core.errors import SandboxError  # after the handler: importing takes seconds
from sandbox.cli import main

try:
    main(prog_name="python -m sandbox")
except SandboxError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(2)
