#!/usr/bin/env bash
# Run the service locally: create the instance (idempotent) and serve it with
# gunicorn on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export SANDBOX_INSTANCE_PATH=${SANDBOX_INSTANCE_PATH:-$PWD/instance}

# Files written by the service (keys, encrypted data) are private to this user.
umask 077

make --no-print-directory -s venv

# Creates the instance and demo data on the first run; afterwards only prints
# the demo tokens again.
.venv/bin/python -m sandbox init --demo

cat <<'MSG'

Try it with one of the tokens printed above:
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/me

MSG

# One job worker beside the server; it stops when the server stops.
.venv/bin/python -m sandbox worker &
worker_pid=$!
trap 'kill "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null' EXIT

.venv/bin/gunicorn --bind 127.0.0.1:8000 --workers 2 --access-logfile - wsgi:app
