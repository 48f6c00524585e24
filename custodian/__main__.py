"""``python -m custodian``: the key custodian's command line (also ``python -m sandbox custodian``)."""

import sys

from core.errors import SandboxError
from custodian.cli import main

try:
    main(prog_name="python -m custodian")
except SandboxError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(2)
