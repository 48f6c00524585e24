"""``python -m sandbox``: the command line."""

import sys

from core.errors import SandboxError
from sandbox.cli import main

try:
    main(prog_name="python -m sandbox")
except SandboxError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(2)
