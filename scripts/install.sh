#!/usr/bin/env bash
# Installs pluginhost for real, as root: the binary in /usr/local/sbin, the bundled plugins in
# /usr/local/lib/pluginhost, and their manifests in /etc/pluginhost/plugins.d — written by
# `pluginhost plugin add` from the templates in plugins.d/, with the checksum of the library
# installed (templates of plugins already installed are left alone unless --force).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
require_root "it installs into /usr/local and /etc"
ensure_packages "${BUILD_PACKAGES[@]}"
swift_on_path
force=()
[ "${1:-}" = --force ] && force=(--force)

swift build -q -c release
BIN=$(swift build -c release --show-bin-path)
install -d -o root -g root -m 0755 /usr/local/sbin /usr/local/lib/pluginhost /etc/pluginhost /etc/pluginhost/plugins.d
install -o root -g root -m 0755 "$BIN/pluginhost" /usr/local/sbin/pluginhost
for template in plugins.d/*.json; do
    library=$(sed -n 's/^ *"library": *"\([^"]*\)".*/\1/p' "$template")
    [ -f "$BIN/$library" ] || { echo "skipping $template: $BIN/$library was not built" >&2; continue; }
    install -o root -g root -m 0755 "$BIN/$library" "/usr/local/lib/pluginhost/$library"
    /usr/local/sbin/pluginhost plugin add "/usr/local/lib/pluginhost/$library" --template "$template" "${force[@]}" ||
        echo "kept the existing manifest for $template (use --force to replace it)" >&2
done
/usr/local/sbin/pluginhost list || true
