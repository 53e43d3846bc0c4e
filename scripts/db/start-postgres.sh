#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for the tests, as root (the server runs as user
# postgres): its own directory, 127.0.0.1 and a unix socket directory only; the system's
# clusters and postgresql.service are never started or touched. Installs postgresql-15 with
# apt when it is missing.
#
#   set -a; eval "$(scripts/db/start-postgres.sh)"; set +a
#
# stdout: KEY=value lines only (also kept in $POSTGRES_DIR/env): PGHOST, PGPORT, PGUSER and
# PGDATABASE let psql, pgbench and libpq connect with no options. Progress on stderr.
# Idempotent: a cluster of this directory that answers gets its parameters reprinted.
# In:  POSTGRES_DIR (default /tmp/pluginhost-postgres; a data/ already there, e.g. a restored
#      snapshot copy, is started as it is), POSTGRES_PORT (default: a free port in 11000-19999).
# Authentication: trust, superuser postgres, on the socket and 127.0.0.1.
set -euo pipefail
DB_SCRIPT=start-postgres
. "$(dirname "$0")/common.sh"
db_require_root

DIR=$(realpath -m "${POSTGRES_DIR:-/tmp/pluginhost-postgres}")
PGBIN=/usr/lib/postgresql/15/bin
as_postgres() { runuser -u postgres -- "$@"; }

# The pid in data/postmaster.pid if that process really runs on this data directory
# (a postmaster's working directory is its data directory; a copied pid file names another).
running_pid() {
    local pid
    pid=$(head -n 1 "$DIR/data/postmaster.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$DIR/data")" ] && echo "$pid"
}

if [ "$(db_env_value "$DIR/env" POSTGRES_DIR)" = "$DIR" ] && running_pid >/dev/null &&
   "$PGBIN/pg_isready" -q -h "$(db_env_value "$DIR/env" PGHOST)" -p "$(db_env_value "$DIR/env" PGPORT)" 2>/dev/null; then
    cat "$DIR/env"
    exit 0
fi
rm -f "$DIR/env"
if [ -f "$DIR/data/postmaster.pid" ]; then
    if pid=$(running_pid); then db_die "postmaster $pid runs on $DIR/data but $DIR/env does not describe it: stop it first"; fi
    rm -f "$DIR/data/postmaster.pid"   # left by a crash, or copied with a snapshot
fi

if [ ! -x "$PGBIN/postgres" ] || [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pgbench" ] || [ ! -x "$PGBIN/psql" ]; then
    db_log "installing postgresql-15 (the system cluster stays stopped)"
    db_apt_install postgresql-15 postgresql-client-15 || db_die "apt-get install postgresql-15 failed"
fi

PORT=${POSTGRES_PORT:-}
if [ -z "$PORT" ]; then PORT=$(db_free_port) || db_die "no free port in 11000-19999"; fi

install -d -o postgres -g postgres -m 0755 "$DIR" "$DIR/run" || db_die "cannot create $DIR"
as_postgres test -w "$DIR/run" || db_die "user postgres cannot reach $DIR (every directory above it must be searchable)"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
    db_log "creating a new cluster in $DIR/data"
    as_postgres "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$DIR/initdb.log" 2>&1 || db_die "initdb failed:
$(tail -n 20 "$DIR/initdb.log")"
fi

db_log "starting postgres: 127.0.0.1:$PORT and $DIR/run"
as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 120 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR/run" >&2 ||
    db_die "pg_ctl start failed:
$(tail -n 20 "$DIR/postgres.log" 2>/dev/null)"
PID=$(head -n 1 "$DIR/data/postmaster.pid")
"$PGBIN/psql" -X -q -h "$DIR/run" -p "$PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null ||
    db_die "postgres started but does not answer a query"

cat >"$DIR/env.new" <<END
POSTGRES_DIR=$DIR
POSTGRES_DATA=$DIR/data
POSTGRES_PID=$PID
POSTGRES_SOCKET=$DIR/run/.s.PGSQL.$PORT
POSTGRES_HOST=127.0.0.1
PGBIN=$PGBIN
PGHOST=$DIR/run
PGPORT=$PORT
PGUSER=postgres
PGDATABASE=postgres
END
mv "$DIR/env.new" "$DIR/env"
cat "$DIR/env"
