#!/usr/bin/env bash
# Every test, as root, on a fresh Debian 12 machine with a Swift toolchain: installs what the
# tests need with apt, starts the throwaway PostgreSQL 15 and MariaDB servers of scripts/db
# (loopback and their own unix sockets; left running for the next run, stop them with
# scripts/db/stop-*.sh), builds, and runs the suites. The integration tests make loop
# filesystems and freeze them for real; then the suites that freeze and spawn run a second
# time with every kernel fallback forced (PLUGINHOST_TEST_FORCE_FALLBACKS=1).
# Extra arguments go to `swift test` (e.g. --filter ScriptRunnerTests) and skip the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
require_root "the integration tests freeze loop filesystems"
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
swift_on_path
modprobe loop 2>/dev/null || true

# Assigned first, so that a server that does not start stops the run (set -e).
postgres_env=$(scripts/db/start-postgres.sh)
mariadb_env=$(scripts/db/start-mariadb.sh)
set -a
eval "$postgres_env"
eval "$mariadb_env"
set +a

swift build --build-tests
if [ $# -gt 0 ]; then
    exec swift test --skip-build "$@"
fi
swift test --skip-build
# Again, with every kernel fallback forced (pidfd_open, STATX_MNT_ID, close_range: see
# `pluginhost check`): the suites that freeze and spawn processes, less the long database proofs.
PLUGINHOST_TEST_FORCE_FALLBACKS=1 swift test --skip-build --filter 'IntegrationTests|ScriptRunnerTests' \
    --skip MySQLConsistencyTests --skip PostgreSQLConsistencyTests
