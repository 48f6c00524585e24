#!/usr/bin/env bash
# Start (or reuse) a throw-away PostgreSQL cluster for the test suite.
#
#   scripts/postgres-test.sh         start it if needed; print its URL on stdout
#   scripts/postgres-test.sh stop    stop it
#   scripts/postgres-test.sh status  exit 0 if it is running, 3 if not
#
# The cluster is separate from any system cluster: data, socket and log live
# under ${SANDBOX_PG_DIR:-/tmp/sandbox-pg}, it listens on 127.0.0.1:54329 and
# trusts local connections (tests only; never use it for real data).
#
# stdout carries only the URL (messages go to stderr), so callers can write
# url=$(scripts/postgres-test.sh). When no server is installed and we cannot
# install one (not root), stdout stays empty and the exit status is 0, or 1
# under CI=true since CI must test PostgreSQL.
set -euo pipefail

PG_DIR=${SANDBOX_PG_DIR:-/tmp/sandbox-pg}
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/log
PG_PORT=54329
PG_URL="postgresql+psycopg://postgres@127.0.0.1:${PG_PORT}/postgres"
BINDIR=

log() { echo "postgres-test: $*"; }
die() { log "error: $*"; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command as the cluster owner: the postgres user when we are root
# (the server refuses to run as root), ourselves otherwise.
as_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Newest installed server, e.g. /usr/lib/postgresql/15/bin ("" if none).
find_bindir() {
    local initdb
    initdb=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $initdb ]]; then
        dirname "$initdb"
    fi
}

install_server() {
    log "no PostgreSQL server found; installing the Debian package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
}

# No server and no way to get one: SQLite only, except in CI.
unavailable() {
    log "no PostgreSQL server in /usr/lib/postgresql, and only root may install one"
    log "install it (apt-get install postgresql) or set SANDBOX_TEST_DATABASE_URL"
    if [[ ${CI:-} == true ]]; then
        die "CI must test PostgreSQL"
    fi
    log "continuing without PostgreSQL: the suite runs on SQLite only"
    exit 0
}

running() { "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# Start the server holding no inherited descriptors beyond 0-2: a daemon that
# keeps the caller's pipes open would leave $(...) or a CI log reader waiting.
start_server() (
    local fd
    for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        if ((fd > 2 && fd != 255)); then
            eval "exec $fd>&-"
        fi
    done
    as_owner "$BINDIR/pg_ctl" -D "$PG_DATA" \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        -l "$PG_LOG" -w start </dev/null >/dev/null
)

start() {
    if running; then
        log "reusing the server already running on 127.0.0.1:$PG_PORT"
        return
    fi
    if is_root && ! id postgres >/dev/null 2>&1; then
        die "user 'postgres' does not exist (reinstall the postgresql package)"
    fi

    # The base dir is also the socket dir: the owner must be able to write it.
    mkdir -p "$PG_DIR"
    if is_root; then
        chown postgres:postgres "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "creating a test cluster in $PG_DATA ($BINDIR)"
        as_owner "$BINDIR/initdb" -D "$PG_DATA" -A trust -U postgres \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi

    log "starting it on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    if ! start_server; then
        tail -n 20 "$PG_LOG" || true
        die "could not start PostgreSQL (is port $PG_PORT taken by another server?)"
    fi
}

stop() {
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        as_owner "$BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w stop
    else
        log "not running"
    fi
}

main() {
    BINDIR=$(find_bindir)
    if [[ ${1:-} == status ]]; then
        [[ -n $BINDIR ]] && running && exit 0
        exit 3
    fi
    if [[ -z $BINDIR ]]; then
        is_root || unavailable
        install_server
        BINDIR=$(find_bindir)
        [[ -n $BINDIR ]] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
    fi

    # An existing cluster must be run by the major version that created it.
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        local ver
        ver=$(<"$PG_DATA/PG_VERSION")
        [[ -x /usr/lib/postgresql/$ver/bin/pg_ctl ]] ||
            die "$PG_DATA was made by PostgreSQL $ver, which is not installed; delete $PG_DIR"
        BINDIR=/usr/lib/postgresql/$ver/bin
    fi

    case ${1:-start} in
        start) start; log "ready: export SANDBOX_TEST_DATABASE_URL=$PG_URL" ;;
        stop) stop ;;
        *) die "usage: $0 [start|stop|status]" ;;
    esac
}

main "$@" >&2
if [[ ${1:-start} == start ]]; then
    echo "$PG_URL"
fi
