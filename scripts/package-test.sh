#!/usr/bin/env bash
# The package on a machine that never saw the build: debootstraps a minimal Debian 12 into a
# directory of its own, installs the .deb there with dpkg -i (apt brings its Depends), and runs
# `pluginhost --version`, `check`, a whole `run` with the shell plugin on a loop filesystem this
# script makes (its summary line received by rsyslog), `history`, `man pluginhost`,
# `systemd-analyze verify` on the units; then kills
# an operation and its guard while frozen and checks that the recovery unit's command thaws,
# that the package refuses removal while an operation is active, and that it purges cleanly.
# No Swift toolchain in there: whatever the binary needs must come from the package.
#
#   sudo scripts/package-test.sh [dist/pluginhost_VERSION_ARCH.deb]   (default: builds it)
#
# The debootstrapped system is cached as a tarball in $PLUGINHOST_CI_CACHE
# (default /var/cache/pluginhost-ci); DEBIAN_MIRROR picks the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
require_root "it debootstraps, chroots and mounts a loop filesystem"
ensure_packages debootstrap e2fsprogs util-linux mount python3 coreutils
started=$(date +%s)

DEB=${1:-}
if [ -z "$DEB" ]; then DEB=$(scripts/package.sh | tail -n 1); fi
[ -f "$DEB" ] || { echo "no package $DEB" >&2; exit 1; }
CACHE=${PLUGINHOST_CI_CACHE:-/var/cache/pluginhost-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

WORK=$(mktemp -d /tmp/pluginhost-package-test-XXXXXX)
chmod 0755 "$WORK"
ROOT=$WORK/root
step() { echo "== $*" >&2; }
fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C HOME=/root "$@"; }

# Every mount under $WORK, deepest first; thawed before unmounting (a frozen filesystem
# cannot be unmounted). The directory is removed only when nothing is mounted in it.
cleanup() {
    local mounts mount
    for pid in ${KILL_PIDS:-}; do kill -KILL "$pid" 2>/dev/null || true; done
    mounts=$(findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r || true)
    for mount in $mounts; do
        fsfreeze -u "$mount" 2>/dev/null || true
        umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    done
    if findmnt -rn -o TARGET | grep -qF "$WORK/"; then
        echo "package-test: something is still mounted under $WORK; left in place" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step "a minimal Debian 12 in $ROOT"
tarball=$CACHE/debian-$SUITE-minbase.tar.gz
mkdir -p "$ROOT"
if [ -f "$tarball" ]; then
    tar -xzf "$tarball" -C "$ROOT"
else
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >&2
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    install -d -m 0755 "$CACHE"
    tar -czf "$tarball.tmp" -C "$ROOT" . && mv "$tarball.tmp" "$tarball"
fi
[ ! -e "$ROOT/opt/swift" ] || fail "the chroot has a Swift toolchain"
in_root sh -c '! command -v swift && ! command -v swiftc' >/dev/null || fail "the chroot has a Swift compiler"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"

step "dpkg -i $(basename "$DEB"), apt for its Depends"
cp "$DEB" "$ROOT/tmp/pluginhost.deb"
in_root apt-get update -q >&2
if ! in_root dpkg -i /tmp/pluginhost.deb >&2; then
    in_root apt-get install -f -y -q --no-install-recommends >&2
fi
in_root dpkg-query -W -f='${Status}\n' pluginhost | grep -q 'install ok installed' || fail "pluginhost is not installed"
in_root sh -c 'ldd /usr/sbin/pluginhost /usr/lib/pluginhost/plugins/*.so' >"$WORK/ldd.txt" 2>&1 || fail "ldd in the chroot"
if grep -q "not found" "$WORK/ldd.txt"; then fail "unresolved libraries: $(grep 'not found' "$WORK/ldd.txt")"; fi

step "pluginhost --version"
version=$(in_root pluginhost --version)
echo "$version" >&2
echo "$version" | grep -Eq '^pluginhost [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]+(-dirty)?\)$' || fail "--version printed: $version"
for directory in /etc/pluginhost/plugins.d:755 /var/lib/pluginhost:700 /var/lib/pluginhost/reports:700 /run/pluginhost:700; do
    mode=$(in_root stat -c %a "${directory%%:*}") || fail "${directory%%:*} is missing"
    [ "$mode" = "${directory##*:}" ] || fail "${directory%%:*} has mode $mode, expected ${directory##*:}"
done
in_root pluginhost list >&2 || fail "pluginhost list refused a bundled plugin"

step "a loop filesystem at /mnt/data, the example scripts, the shell plugin"
truncate -s 64M "$WORK/data.img"
mkfs.ext4 -q "$WORK/data.img"
mkdir -p "$ROOT/mnt/data"
mount -o loop "$WORK/data.img" "$ROOT/mnt/data"
dd if=/dev/urandom of="$ROOT/mnt/data/important" bs=1M count=4 status=none
examples=/usr/share/doc/pluginhost/examples
in_root sh -c "install -d -m 0755 /etc/azure &&
    install -m 0600 $examples/VMSnapshotScriptPluginConfig.json /etc/azure/ &&
    install -m 0700 $examples/pre-script.sh /etc/azure/pre-script.sh &&
    install -m 0700 $examples/post-script.sh /etc/azure/post-script.sh &&
    install -m 0755 $examples/hold-session.sh /usr/local/sbin/hold-session.sh"
in_root pluginhost plugin add /usr/lib/pluginhost/plugins/libpluginhost-shell.so --name app --order 10 \
    --config '{"quiesce": ["/usr/local/sbin/hold-session.sh"], "hold": true}' >&2

step "pluginhost check"
in_root pluginhost check --mount /mnt/data >&2 || fail "check found problems"

step "rsyslog as the system log, then pluginhost run"
in_root apt-get install -y -q --no-install-recommends rsyslog man-db systemd >&2
in_root rsyslogd -i /run/rsyslogd.pid >&2 || fail "cannot start rsyslogd in the chroot"
for _ in $(seq 100); do [ -S "$ROOT/dev/log" ] && [ -s "$ROOT/run/rsyslogd.pid" ] && break; sleep 0.1; done
rsyslog=$(cat "$ROOT/run/rsyslogd.pid")
KILL_PIDS=$rsyslog
[ -S "$ROOT/dev/log" ] || fail "rsyslogd made no /dev/log"
status=0
in_root pluginhost run --mount /mnt/data --json -- /bin/sh -c 'echo "$PLUGINHOST_FROZEN_MOUNTS" >/tmp/frozen-mounts' \
    >"$WORK/report.json" || status=$?
[ "$status" = 0 ] || { cat "$WORK/report.json" >&2; fail "run exited $status"; }
python3 - "$WORK/report.json" <<'PY' || fail "the report is not what a whole operation gives"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["result"] == "succeeded" and report["consistency"] == "application", report["result"]
assert [m["mountPoint"] for m in report["freeze"]["mounts"]] == ["/mnt/data"]
assert report["freeze"]["mounts"][0]["freeze"] == "frozen" and report["freeze"]["mounts"][0]["thaw"] == "thawed"
assert "app" in [p["name"] for p in report["plugins"]], report["plugins"]
assert [s["phase"] for s in report["scripts"]] == ["pre", "post"], report["scripts"]
assert report["pluginhostVersion"] and report["schemaVersion"] == 1
print("run:", report["operationID"], report["result"], report["consistency"], "window", report["freeze"]["windowMs"], "ms", file=sys.stderr)
PY
[ "$(cat "$ROOT/tmp/frozen-mounts")" = /mnt/data ] || fail "the snapshot command did not run while /mnt/data was frozen"
operation=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["operationID"])' "$WORK/report.json")
for _ in $(seq 100); do grep -qs "operation=$operation" "$ROOT/var/log/syslog" && break; sleep 0.1; done
grep -s "pluginhost\[[0-9]*\]: operation=$operation command=run result=succeeded consistency=application snapshot=taken exit=0 frozen_mounts=1 " \
    "$ROOT/var/log/syslog" >&2 || fail "no summary line for $operation in the chroot's /var/log/syslog"
in_root pluginhost history >&2
in_root pluginhost history --json | grep -q '"result" : "succeeded"' || fail "history does not list the run"

step "man pluginhost, completions"
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man pluginhost' >"$WORK/man.txt" 2>&1 || { cat "$WORK/man.txt" >&2; fail "man pluginhost failed"; }
grep -q "pluginhost-recover.timer" "$WORK/man.txt" && grep -q -- "--snapshot-command\|run" "$WORK/man.txt" ||
    fail "the man page lacks its sections"
head -n 12 "$WORK/man.txt" >&2
[ -s "$ROOT/usr/share/bash-completion/completions/pluginhost" ] || fail "no bash completion"

step "systemd-analyze verify on every unit"
in_root systemd-analyze verify /lib/systemd/system/pluginhost-recover.service /lib/systemd/system/pluginhost-recover.timer >&2 ||
    fail "systemd-analyze verify"
in_root systemd-tmpfiles --create /usr/lib/tmpfiles.d/pluginhost.conf >&2 || fail "systemd-tmpfiles"
[ -L "$ROOT/etc/systemd/system/timers.target.wants/pluginhost-recover.timer" ] || fail "the recovery timer is not enabled"

step "an operation killed with its guard while frozen; removal refused; the recovery unit thaws"
# exec: $! must be pluginhost itself (chroot and env exec it), not a subshell around it.
(exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
    pluginhost run --mount /mnt/data --max-frozen 120 -- /bin/sh -c 'touch /tmp/frozen.marker; exec sleep 100' \
    >"$WORK/killed-run.txt" 2>&1) &
host=$!
KILL_PIDS=$host
for _ in $(seq 600); do [ -e "$ROOT/tmp/frozen.marker" ] && break; sleep 0.1; done
[ "$(readlink "/proc/$host/exe")" = "$ROOT/usr/sbin/pluginhost" ] || fail "pid $host is not the pluginhost process"
[ -e "$ROOT/tmp/frozen.marker" ] || { cat "$WORK/killed-run.txt" >&2; fail "the operation did not freeze"; }
if in_root dpkg -r pluginhost >"$WORK/remove.txt" 2>&1; then fail "dpkg -r removed the package during an operation"; fi
grep -q "an operation is active" "$WORK/remove.txt" || { cat "$WORK/remove.txt" >&2; fail "prerm did not say why"; }
# The guard is the host's child started as `pluginhost __guard`; the operation id is in status.
guard=$(ps --ppid "$host" -o pid=,args= | awk '$3 == "__guard" {print $1}')
[ -n "$guard" ] || fail "no freeze guard under pid $host"
killed=$(in_root pluginhost status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["operationID"])')
# Stopped first, so that neither sees the other die and thaws.
kill -STOP "$guard" "$host"
kill -KILL "$guard" "$host"
wait "$host" 2>/dev/null || true
KILL_PIDS=$rsyslog
[ "$(in_root pluginhost status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = needs-recovery ] ||
    fail "status does not say needs-recovery after the kill"
exec_start=$(sed -n 's/^ExecStart=//p' "$ROOT/lib/systemd/system/pluginhost-recover.service")
in_root $exec_start >&2 || fail "the recovery unit's command failed: $exec_start"
if fsfreeze -u "$ROOT/mnt/data" 2>/dev/null; then fail "/mnt/data was still frozen after the recovery unit ran"; fi
in_root pluginhost status | head -n 1 >&2
for _ in $(seq 100); do grep -qs "operation=$killed " "$ROOT/var/log/syslog" && break; sleep 0.1; done
grep -s "operation=$killed command=run result=failed .* errors=OperationInterrupted" "$ROOT/var/log/syslog" >&2 ||
    fail "no summary line for the recovered operation $killed"

kill "$rsyslog" 2>/dev/null || true
for _ in $(seq 100); do [ -e "/proc/$rsyslog" ] || break; sleep 0.1; done
KILL_PIDS=""
step "dpkg --purge"
in_root dpkg --purge pluginhost >&2 || fail "dpkg --purge failed"
[ ! -e "$ROOT/var/lib/pluginhost" ] && [ ! -e "$ROOT/usr/sbin/pluginhost" ] || fail "purge left files behind"

echo "package-test: PASSED in $(( $(date +%s) - started )) s ($(du -k "$DEB" | cut -f1) KiB package)" >&2
