#!/usr/bin/env bash
# Create (idempotently) a separate virtualenv for SmartNoise SQL.
#
# smartnoise-sql pins opendp<0.15 while the sandbox uses opendp 0.16, so the
# two cannot share an environment. benchmarks/dp_vs_smartnoise.py drives this
# venv's python through a subprocess and never imports snsql itself.
#
# The venv lives outside the repository (not covered by .gitignore):
#   SMARTNOISE_VENV=/some/path bash benchmarks/smartnoise_env.sh
set -euo pipefail

VENV="${SMARTNOISE_VENV:-/tmp/sandbox-smartnoise-venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi

if "$VENV/bin/python" -c "import snsql, pandas, numpy" >/dev/null 2>&1; then
    echo "smartnoise venv ready: $VENV"
    exit 0
fi

"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet smartnoise-sql pandas numpy
"$VENV/bin/python" -m pip show smartnoise-sql opendp | grep -E '^(Name|Version):' 
echo "smartnoise venv ready: $VENV"
