#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the store tests (Debian machines).
#
#   scripts/postgres.sh start        install PostgreSQL if missing, start a private cluster,
#                                    print its SQLAlchemy URL (the only line on stdout)
#   scripts/postgres.sh url          print the URL of the running cluster
#   scripts/postgres.sh stop         stop the cluster and delete its folder
#   scripts/postgres.sh run -- CMD   start, run CMD with CLAWFED_TEST_POSTGRES_URL set, stop;
#                                    exits with CMD's status
#
# The cluster lives in $CLAWFED_PG_DIR (default: a folder under ${TMPDIR:-/tmp} named after
# this checkout), listens only on 127.0.0.1 on a free port, and trades durability for speed
# (fsync off): never point it at data you want to keep. When run as root it runs the server
# as the 'postgres' system user, because PostgreSQL refuses to run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
DIR="${CLAWFED_PG_DIR:-${TMPDIR:-/tmp}/clawfed-postgres-$(id -u)-$TAG}"
DATA="$DIR/data"
URL_FILE="$DIR/url"
LOG="$DIR/server.log"
DB_USER="clawfed"
DB_NAME="clawfed"

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

bindir() {
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$found" && -x "$found/initdb" ]]; then
        printf '%s\n' "$found"
    fi
}

install_postgres() {
    [[ -n "$(bindir)" ]] && return 0
    say "PostgreSQL is not installed; installing Debian's 'postgresql' package"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "installing PostgreSQL needs root (or sudo)"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    [[ -n "$(bindir)" ]] || die "apt-get installed postgresql but no initdb was found"
}

# Run a command as the cluster's owner: 'postgres' when we are root, else ourselves.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    # A port the kernel just handed out is free; without python3, a random high one (a port
    # found taken makes the start fail, and start tries another).
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null; then
        return 0
    fi
    echo $((20000 + RANDOM % 40000))
}

running() {
    local bin
    bin="$(bindir)"
    [[ -n "$bin" && -f "$DATA/PG_VERSION" && -f "$URL_FILE" ]] || return 1
    as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    if running; then
        cat "$URL_FILE"
        return 0
    fi
    [[ -e "$DIR" ]] && stop_quietly
    install_postgres
    local bin password port
    bin="$(bindir)"
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    if [[ "$(id -u)" == 0 ]]; then
        getent passwd postgres >/dev/null || die "root needs the 'postgres' system user to run the server"
        chown postgres: "$DIR"
    fi
    as_owner sh -c "umask 077 && printf '%s\n' '$password' > '$DIR/pwfile'"
    as_owner "$bin/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$DIR/pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    as_owner rm -f "$DIR/pwfile"
    for _attempt in 1 2 3 4 5; do
        port="$(free_port)"
        if as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o \
            "-c listen_addresses=127.0.0.1 -p $port -k '$DIR' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            >/dev/null 2>&1; then
            break
        fi
        say "could not start on port $port; trying another"
        port=""
    done
    [[ -n "$port" ]] || { cat "$LOG" >&2 || true; die "the server did not start"; }
    PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
        -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE $DB_NAME" >&2
    local url="postgresql+psycopg://$DB_USER:$password@127.0.0.1:$port/$DB_NAME"
    (umask 077 && printf '%s\n' "$url" >"$URL_FILE")
    say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $DATA"
    printf '%s\n' "$url"
}

stop_quietly() {
    local bin
    bin="$(bindir)"
    if [[ -n "$bin" && -f "$DATA/PG_VERSION" ]]; then
        as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}

stop() {
    if [[ ! -e "$DIR" ]]; then
        say "no cluster at $DIR"
        return 0
    fi
    stop_quietly
    say "stopped and removed $DIR"
}

url() {
    running || die "no cluster is running at $DIR; run '$0 start'"
    cat "$URL_FILE"
}

run() {
    [[ $# -gt 0 ]] || die "usage: $0 run -- COMMAND [ARGS...]"
    local u status
    u="$(start)"
    trap stop_quietly EXIT
    set +e
    CLAWFED_TEST_POSTGRES_URL="$u" "$@"
    status=$?
    set -e
    return "$status"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    run)
        shift
        [[ "${1:-}" == "--" ]] && shift
        run "$@"
        ;;
    *) die "usage: $0 start | stop | url | run -- COMMAND [ARGS...]" ;;
esac
