#!/usr/bin/env bash
# Run the service locally (`make run`, after `make venv`): create the instance (idempotent), start
# the key custodian of he jobs on http://127.0.0.1:8001, one job worker, and serve the sandbox with
# gunicorn on http://127.0.0.1:8000. RUN_PORT and RUN_CUSTODIAN_PORT change the ports (the README
# test runs this script on free ports); SANDBOX_INSTANCE_PATH the instance folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export SANDBOX_INSTANCE_PATH=${SANDBOX_INSTANCE_PATH:-$PWD/instance}
custodian_dir=${SANDBOX_CUSTODIAN_DIR:-$SANDBOX_INSTANCE_PATH/custodian}
port=${RUN_PORT:-8000}
custodian_port=${RUN_CUSTODIAN_PORT:-8001}
custodian_url=http://127.0.0.1:$custodian_port

# Files written by the service (keys, encrypted data) are private to this user.
umask 077

# Script jobs' isolation (bubblewrap, libseccomp): installed when missing, as root.
bash scripts/isolation-deps.sh
# Their pinned runtime (requirements-script-runtime.txt), a venv of its own: built or rebuilt when its pins change.
bash scripts/script-runtime.sh

# Creates the instance and demo data on the first run. The demo tokens (ADMIN, STEWARD, ANALYST,
# AUDITOR) go to $SANDBOX_INSTANCE_PATH/demo-tokens.env (mode 0600) and stay valid on later runs.
.venv/bin/python -m sandbox init --demo

# The key custodian: its own directory and master key, the Paillier private key
# wrapped by it. It learns the domain's public key to verify release decisions;
# the sandbox learns only the custodian's public key. Locally both sit in one
# folder; in production the custodian runs elsewhere, with only its own files.
SANDBOX_CUSTODIAN_DIR=$custodian_dir .venv/bin/python -m sandbox custodian init
.venv/bin/python -m sandbox keys export-public --out "$custodian_dir/domain.pub"
env -i PATH="$PATH" HOME="$HOME" SANDBOX_CUSTODIAN_DIR="$custodian_dir" \
  .venv/bin/python -m sandbox custodian serve --port "$custodian_port" &
custodian_pid=$!
trap 'kill "$custodian_pid" 2>/dev/null; wait "$custodian_pid" 2>/dev/null' EXIT
.venv/bin/python - "$custodian_url" <<'PY'
import sys, time, urllib.request
for _ in range(100):  # until the custodian answers (10 s at most)
    try:
        urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
PY
.venv/bin/python -m sandbox he register-key --from "$custodian_url"
# The demo's he slice: PUMS with income encrypted under that key, and an he grant.
.venv/bin/python -m sandbox he demo >/dev/null

cat <<MSG

Serving on http://127.0.0.1:$port. In another shell, from this folder:
  source $SANDBOX_INSTANCE_PATH/demo-tokens.env
  curl -s -H "Authorization: Bearer \$ANALYST" http://127.0.0.1:$port/api/v1/me
The web console: http://127.0.0.1:$port/ (login analyst, steward, auditor or admin; the
passwords are in $SANDBOX_INSTANCE_PATH/demo-passwords.env)

MSG

# One job worker beside the server; it stops when the server stops. Only the
# worker talks to the custodian.
SANDBOX_CUSTODIAN_URL=$custodian_url .venv/bin/python -m sandbox worker &
worker_pid=$!
trap 'kill "$worker_pid" "$custodian_pid" 2>/dev/null; wait "$worker_pid" "$custodian_pid" 2>/dev/null' EXIT

# The access log names no password-link token (``sandbox.access_log``).
.venv/bin/gunicorn --bind "127.0.0.1:$port" --workers 2 --access-logfile - --logger-class sandbox.access_log.AccessLogger wsgi:app
