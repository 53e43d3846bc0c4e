#!/usr/bin/env bash
# Stops the cluster of start-postgres.sh in POSTGRES_DIR (default /tmp/pluginhost-postgres)
# and removes the directory; --keep keeps it. Nothing running is fine.
set -euo pipefail
DB_SCRIPT=stop-postgres
. "$(dirname "$0")/common.sh"
DIR=$(realpath -m "${POSTGRES_DIR:-/tmp/pluginhost-postgres}")
PGBIN=/usr/lib/postgresql/15/bin

pid=""
if [ "$(db_env_value "$DIR/env" POSTGRES_DIR)" = "$DIR" ]; then pid=$(db_env_value "$DIR/env" POSTGRES_PID); fi
# Only a postmaster recorded for this directory AND running on its data directory.
if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$DIR/data")" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >&2 || {
        db_log "pg_ctl stop failed: SIGQUIT to $pid"
        kill -QUIT "$pid" 2>/dev/null || true
    }
    for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    db_log "stopped postgres $pid"
else
    db_log "no cluster of $DIR is running"
fi
rm -f "$DIR/env"
[ "${1:-}" = --keep ] || rm -rf "$DIR"
