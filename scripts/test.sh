#!/usr/bin/env bash
# Every test, as root: the integration tests make loop filesystems and freeze them for real,
# and the plugin tests talk to real PostgreSQL and MariaDB servers, started here (throwaway,
# loopback and unix sockets only) with the scripts in ../shared/db.
# Extra arguments go to `swift test` (e.g. --filter ScriptRunnerTests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0 (integration tests freeze loop filesystems)" >&2; exit 1; }

db=""
for candidate in "$PWD/../shared/db" /work/shared/db; do
    [ -f "$candidate/start-postgres.sh" ] && { db=$candidate; break; }
done
if [ -n "$db" ]; then
    export PLUGINHOST_DB_SCRIPTS=$db
    set -a
    eval "$(bash "$db/start-postgres.sh")"
    eval "$(bash "$db/start-mariadb.sh")"
    set +a
else
    echo "WARNING: no ../shared/db scripts: the database plugin tests are skipped" >&2
fi

swift build --build-tests
swift test --skip-build "$@"
