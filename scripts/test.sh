#!/usr/bin/env bash
# Run the test suite twice: on SQLite (the default) and on PostgreSQL.
#
# Extra pytest arguments come from $PYTEST_ARGS (shell-quoted, e.g.
# PYTEST_ARGS='-x -k "ledger and not slow"') and from this script's arguments.
# Set SANDBOX_TEST_DATABASE_URL to use an existing PostgreSQL database instead
# of the local test cluster started by scripts/postgres-test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory -s venv
# Script jobs' isolation (bubblewrap, libseccomp): installed when missing, as root.
bash scripts/isolation-deps.sh
# Their pinned runtime (requirements-script-runtime.txt), a venv of its own: built or rebuilt when its pins change.
bash scripts/script-runtime.sh
# The web console's browser test: Chromium and a CJK font, installed when missing, as root.
bash scripts/console-deps.sh

eval "extra_args=(${PYTEST_ARGS:-})"
extra_args+=("$@")

# The SQLite run must not see a PostgreSQL URL from the caller's environment.
pg_url=${SANDBOX_TEST_DATABASE_URL:-}
unset SANDBOX_TEST_DATABASE_URL
if [[ -z $pg_url ]]; then
    # A test server this run starts is stopped when it ends (SANDBOX_KEEP_PG=1 keeps it running).
    if ! bash scripts/postgres-test.sh status && [[ ${SANDBOX_KEEP_PG:-} != 1 ]]; then
        trap 'bash scripts/postgres-test.sh stop >&2 && echo "test.sh: stopped the PostgreSQL test server this run started (SANDBOX_KEEP_PG=1 keeps it)" >&2' EXIT
    fi
    # Empty output means: no PostgreSQL here, SQLite only (never under CI=true).
    pg_url=$(bash scripts/postgres-test.sh)
fi
if [[ -z $pg_url && ${CI:-} == true ]]; then
    echo "test.sh: CI must test PostgreSQL, and no PostgreSQL URL was found" >&2
    exit 1
fi

# Any non-zero pytest status is a failure, including 5 (no tests collected).
sqlite_rc=0
echo "==> tests on SQLite (default database)"
started=$SECONDS
.venv/bin/python -m pytest -q -n 2 --dist worksteal "${extra_args[@]}" || sqlite_rc=$?
took="SQLite $((SECONDS - started)) s"

# Only the tests that use the database run again (tests/conftest.py deselects the others).
pg_rc=0
if [[ -n $pg_url ]]; then
    echo "==> tests on PostgreSQL ($pg_url): the tests that use the database"
    started=$SECONDS
    SANDBOX_TEST_DATABASE_URL=$pg_url \
        .venv/bin/python -m pytest -q -n 2 --dist worksteal -m "not sqlite_only" "${extra_args[@]}" || pg_rc=$?
    took="$took, PostgreSQL $((SECONDS - started)) s"
fi
echo "test.sh: the suite took $took" >&2

if ((sqlite_rc != 0 || pg_rc != 0)); then
    pg_status=$pg_rc
    [[ -n $pg_url ]] || pg_status="not run"
    echo "test.sh: FAILED (pytest exit status: SQLite $sqlite_rc, PostgreSQL $pg_status)" >&2
    exit 1
fi
