#!/usr/bin/env bash
# Every test, as root: the integration tests make loop filesystems and freeze them for real.
# Extra arguments go to `swift test` (e.g. --filter ScriptRunnerTests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0 (integration tests freeze loop filesystems)" >&2; exit 1; }
swift build --build-tests
swift test --skip-build "$@"
