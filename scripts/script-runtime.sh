#!/usr/bin/env bash
# Install the pinned runtime of script jobs (requirements-script-runtime.txt) into .script-runtime/.
#
# Called by scripts/test.sh and scripts/run.sh after `make venv`. The runtime is a venv of its own
# (no pip, no project code), made with the service venv's interpreter so that it runs on the same
# Python the launcher binds into the sandbox. Idempotent: when .script-runtime/.installed holds the
# SHA-256 of the requirements file, nothing is done. Otherwise it is built beside, checked (every
# top-level package imports) and swapped in, so a failed install leaves no half-made runtime: script
# jobs are then refused (sandbox.scripts.runtime), never run on the service's venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
umask 022  # the sandbox runs as uid 65534: the runtime must be world-readable (run.sh sets 077 for its own files)

requirements=requirements-script-runtime.txt
runtime=.script-runtime
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -f $runtime/.installed && $(<"$runtime/.installed") == "$want" ]]; then
    exit 0
fi
echo "script-runtime: installing $requirements into $runtime/" >&2
rm -rf "$runtime.new"
trap 'rm -rf "$runtime.new"' EXIT
.venv/bin/python -m venv --without-pip "$runtime.new"
.venv/bin/python -m pip --python "$runtime.new/bin/python" install -q --disable-pip-version-check \
    --no-deps --only-binary :all: -r "$requirements" >&2
"$runtime.new/bin/python" -I -c 'import numpy, pandas, scipy, statsmodels.api, sklearn, matplotlib, pyarrow.parquet'
echo "$want" >"$runtime.new/.installed"
rm -rf "$runtime"
mv "$runtime.new" "$runtime"
trap - EXIT
echo "script-runtime: ready" >&2
