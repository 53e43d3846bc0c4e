#!/usr/bin/env bash
# The whole operation on a built-in example, as root: a loop-mounted ext4 filesystem made
# here, the example config and scripts installed with the modes the checks demand, a
# snapshot command that copies the image while it is frozen. Prints the report, checks the
# copy, cleans up. Nothing outside the demo's own temporary directory is frozen.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
require_root "it mounts and freezes a loop filesystem"
ensure_packages "${BUILD_PACKAGES[@]}" e2fsprogs util-linux mount
swift_on_path
modprobe loop 2>/dev/null || true

swift build -q -c release --product pluginhost >&2
swift build -q -c release --product pluginhost-shell >&2
BUILT=$(swift build -c release --show-bin-path)
BIN=$BUILT/pluginhost

DEMO=$(mktemp -d /tmp/pluginhost-demo-XXXXXX)
chmod 755 "$DEMO"
cleanup() {
    fsfreeze -u "$DEMO/data" 2>/dev/null || true
    umount "$DEMO/data" 2>/dev/null || true
    rm -rf "$DEMO"
}
trap cleanup EXIT

mkdir -p "$DEMO/data" "$DEMO/etc" "$DEMO/run" "$DEMO/state" "$DEMO/lib" "$DEMO/plugins.d"
truncate -s 64M "$DEMO/data.img"
mkfs.ext4 -q "$DEMO/data.img"
mount -o loop "$DEMO/data.img" "$DEMO/data"
dd if=/dev/urandom of="$DEMO/data/important" bs=1M count=8 status=none

install -m 0700 examples/pre-script.sh "$DEMO/etc/pre-script.sh"
install -m 0700 examples/post-script.sh "$DEMO/etc/post-script.sh"
install -m 0755 examples/snapshot-copy.sh "$DEMO/etc/snapshot-copy.sh"
install -m 0700 examples/hold-session.sh "$DEMO/etc/hold-session.sh"   # a command the plugin runs as root: the scripts' rules
install -m 0755 "$BUILT/libpluginhost-shell.so" "$DEMO/lib/libpluginhost-shell.so"
sed -e "s|/etc/azure/|$DEMO/etc/|" examples/VMSnapshotScriptPluginConfig.json >"$DEMO/etc/config.json"
chmod 0600 "$DEMO/etc/config.json"

export PLUGINHOST_RUN_DIR=$DEMO/run PLUGINHOST_STATE_DIR=$DEMO/state
echo "== pluginhost plugin add: the shell plugin, holding a session from quiesce to resume" >&2
"$BIN" plugin add "$DEMO/lib/libpluginhost-shell.so" --plugins-dir "$DEMO/plugins.d" --name app --order 10 \
    --config "{\"quiesce\": [\"$DEMO/etc/hold-session.sh\"], \"hold\": true}"
echo "== pluginhost check" >&2
"$BIN" check --config "$DEMO/etc/config.json" --plugins-dir "$DEMO/plugins.d" --mount "$DEMO/data"
echo "== pluginhost run" >&2
status=0
"$BIN" run --config "$DEMO/etc/config.json" --plugins-dir "$DEMO/plugins.d" --mount "$DEMO/data" \
    -- "$DEMO/etc/snapshot-copy.sh" "$DEMO/data.img" "$DEMO/snapshot.img" || status=$?

echo "== the snapshot copy" >&2
e2fsck -fn "$DEMO/snapshot.img" >/dev/null 2>&1 && echo "snapshot.img: clean ext4, taken while frozen" >&2
exit $status
