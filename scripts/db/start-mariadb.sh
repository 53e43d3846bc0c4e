#!/usr/bin/env bash
# Starts a throwaway MariaDB (Debian 12: 10.11) for the tests, as root: its own directory,
# 127.0.0.1 and a unix socket only; the system's mariadb.service is never started or touched.
# Installs mariadb-server with apt when it is missing.
#
#   set -a; eval "$(scripts/db/start-mariadb.sh)"; set +a
#
# stdout: KEY=value lines only (also kept in $MARIADB_DIR/env); progress on stderr.
# Idempotent: a server of this directory that answers gets its parameters reprinted.
# In:  MARIADB_DIR (default /tmp/pluginhost-mariadb; a data/ already there, e.g. a restored
#      snapshot copy, is started as it is), MARIADB_PORT (default: a free port in 11000-19999).
# Users: root over the socket (unix_socket authentication); test/test, every privilege, over
#        the socket or 127.0.0.1; database test.
set -euo pipefail
DB_SCRIPT=start-mariadb
. "$(dirname "$0")/common.sh"
db_require_root

DIR=$(realpath -m "${MARIADB_DIR:-/tmp/pluginhost-mariadb}")
SOCKET=$DIR/run/mysqld.sock
answers() { mariadb-admin --no-defaults --socket="$SOCKET" --user=root --connect-timeout=2 ping >/dev/null 2>&1; }

# Running already? Only if the env file was written for THIS directory (a snapshot copy of a
# data directory carries the env file of the server it was copied from) and its pid is a live
# mariadbd that answers on our socket.
if [ "$(db_env_value "$DIR/env" MARIADB_DIR)" = "$DIR" ]; then
    pid=$(db_env_value "$DIR/env" MARIADB_PID)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mariadbd ] && answers; then
        cat "$DIR/env"
        exit 0
    fi
fi
rm -f "$DIR/env"

PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
if ! command -v mariadbd >/dev/null || ! command -v mariadb >/dev/null || ! command -v mariadb-install-db >/dev/null; then
    db_log "installing mariadb-server and mariadb-client (the system service stays stopped)"
    db_apt_install mariadb-server mariadb-client || db_die "apt-get install mariadb-server failed"
fi

PORT=${MARIADB_PORT:-}
if [ -z "$PORT" ]; then PORT=$(db_free_port) || db_die "no free port in 11000-19999"; fi

install -d -o mysql -g mysql -m 0755 "$DIR" "$DIR/run" || db_die "cannot create $DIR"
runuser -u mysql -- test -w "$DIR/run" || db_die "user mysql cannot reach $DIR (every directory above it must be searchable)"
rm -f "$SOCKET" "$DIR/run/mysqld.pid"
if [ ! -d "$DIR/data/mysql" ]; then
    db_log "creating a new server in $DIR/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/data" --skip-test-db --auth-root-authentication-method=socket \
        >"$DIR/install.log" 2>&1 || db_die "mariadb-install-db failed:
$(tail -n 20 "$DIR/install.log")"
fi

db_log "starting mariadbd: 127.0.0.1:$PORT and $SOCKET"
# A session of its own, so that it outlives the caller's terminal and process group.
setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/data" --socket="$SOCKET" --port="$PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mysqld.pid" --log-error="$DIR/error.log" \
    --innodb-buffer-pool-size=128M --skip-name-resolve </dev/null >/dev/null 2>&1 &
launched=$!
# Crash recovery of a restored copy can take a while: up to 120 s.
for _ in $(seq 1200); do
    answers && break
    kill -0 "$launched" 2>/dev/null || db_die "mariadbd exited at start:
$(tail -n 20 "$DIR/error.log" 2>/dev/null)"
    sleep 0.1
done
answers || db_die "mariadbd does not answer after 120 s (see $DIR/error.log)"
PID=$(cat "$DIR/run/mysqld.pid" 2>/dev/null || echo "$launched")

mariadb --no-defaults --socket="$SOCKET" --user=root --batch -e "
    CREATE DATABASE IF NOT EXISTS test;
    CREATE USER IF NOT EXISTS 'test'@'localhost' IDENTIFIED BY 'test';
    CREATE USER IF NOT EXISTS 'test'@'127.0.0.1' IDENTIFIED BY 'test';
    GRANT ALL PRIVILEGES ON *.* TO 'test'@'localhost';
    GRANT ALL PRIVILEGES ON *.* TO 'test'@'127.0.0.1';" || db_die "cannot create the test user and database"

cat >"$DIR/env.new" <<END
MARIADB_DIR=$DIR
MARIADB_DATA=$DIR/data
MARIADB_PID=$PID
MARIADB_SOCKET=$SOCKET
MARIADB_HOST=127.0.0.1
MARIADB_PORT=$PORT
MARIADB_USER=test
MARIADB_PASSWORD=test
MARIADB_DATABASE=test
END
mv "$DIR/env.new" "$DIR/env"
cat "$DIR/env"
