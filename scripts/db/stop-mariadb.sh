#!/usr/bin/env bash
# Stops the server of start-mariadb.sh in MARIADB_DIR (default /tmp/pluginhost-mariadb) and
# removes the directory; --keep keeps it (the data survives for a later start). Nothing
# running is fine.
set -euo pipefail
DB_SCRIPT=stop-mariadb
. "$(dirname "$0")/common.sh"
DIR=$(realpath -m "${MARIADB_DIR:-/tmp/pluginhost-mariadb}")
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

pid=""
# Only the server recorded for this very directory: a copied env file names another server.
if [ "$(db_env_value "$DIR/env" MARIADB_DIR)" = "$DIR" ]; then pid=$(db_env_value "$DIR/env" MARIADB_PID); fi
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mariadbd ]; then
    mariadb-admin --no-defaults --socket="$DIR/run/mysqld.sock" --user=root shutdown 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 300); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    if [ -e "/proc/$pid" ]; then
        db_log "mariadbd $pid still runs after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    db_log "stopped mariadbd $pid"
else
    db_log "no server of $DIR is running"
fi
rm -f "$DIR/env"
[ "${1:-}" = --keep ] || rm -rf "$DIR"
