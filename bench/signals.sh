#!/usr/bin/env bash
# Process-lifetime figures, as root. Medians over N runs (default 10):
#   sigterm-quiesce   SIGTERM to the host while a plugin's quiesce sleeps 30 s → the host has
#                     rolled back and exited (the worker is killed at once, not waited for)
#   worker-kill       SIGKILL to a plugin worker whose shell `hold` command's child holds a
#                     flock → the lock is free (the warden kills the worker's cgroup)
#   host-kill         SIGKILL to the host in the same state → the lock is free
# Prints a table; asserts nothing. BIN=path/to/pluginhost uses that binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-10}

if [ -z "${BIN:-}" ]; then
    swift build -q -c release --product pluginhost
    swift build -q -c release --product pluginhost-shell
    BIN=$(swift build -c release --show-bin-path)/pluginhost
fi
SHELL_LIB=$(dirname "$BIN")/libpluginhost-shell.so
WORK=$(mktemp -d /tmp/pluginhost-bench-XXXXXX)
chmod 755 "$WORK"
cleanup() { fsfreeze -u "$WORK/mnt" 2>/dev/null || true; umount "$WORK/mnt" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/mnt" "$WORK/run" "$WORK/state" "$WORK/lib" "$WORK/sleepy.d" "$WORK/hold.d"
truncate -s 64M "$WORK/fs.img"
mkfs.ext4 -q "$WORK/fs.img"
mount -o loop "$WORK/fs.img" "$WORK/mnt"
export PLUGINHOST_RUN_DIR=$WORK/run PLUGINHOST_STATE_DIR=$WORK/state

cc -shared -fPIC -O1 -DBEHAVIOUR_GOOD -I Sources/PluginABI/include -o "$WORK/lib/libsleepy.so" Tests/Fixtures/fixture_plugin.c
install -m 0755 "$SHELL_LIB" "$WORK/lib/libpluginhost-shell.so"
"$BIN" plugin add "$WORK/lib/libsleepy.so" --name sleepy --plugins-dir "$WORK/sleepy.d" --timeout 120 \
    --config "{\"log\":\"$WORK/calls.log\",\"sleep_ms\":30000}" >/dev/null
cat >"$WORK/hold.sh" <<EOF
#!/bin/sh
echo \$PPID > '$WORK/worker.pid'
flock -x '$WORK/app.lock' sh -c 'echo \$\$ > "$WORK/locker.pid"; exec sleep 300' &
while [ ! -s '$WORK/locker.pid' ]; do sleep 0.01; done
echo READY
cat > /dev/null
EOF
chmod 700 "$WORK/hold.sh"
"$BIN" plugin add "$WORK/lib/libpluginhost-shell.so" --plugins-dir "$WORK/hold.d" --timeout 60 \
    --config "{\"quiesce\": [\"$WORK/hold.sh\"], \"hold\": true}" >/dev/null
printf '#!/bin/sh\ntouch %s/frozen\nexec sleep 300\n' "$WORK" >"$WORK/snapshot.sh"
chmod 700 "$WORK/snapshot.sh"

python3 - "$BIN" "$WORK" "$N" <<'PY'
import fcntl, os, signal, statistics, subprocess, sys, time
bin, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def wait_for(predicate, limit=60):
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end: raise SystemExit("timed out")
        time.sleep(0.002)

def lock_free():
    with open(f"{work}/app.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

def start(plugins, snapshot):
    for name in ("calls.log", "frozen", "worker.pid", "locker.pid"):
        try: os.unlink(f"{work}/{name}")
        except FileNotFoundError: pass
    return subprocess.Popen([bin, "run", "--plugins-dir", plugins, "--mount", f"{work}/mnt", "--max-frozen", "120", "--", snapshot],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

sigterm, worker, host = [], [], []
for _ in range(n):
    p = start(f"{work}/sleepy.d", "/bin/true")
    wait_for(lambda: os.path.exists(f"{work}/calls.log") and "quiesce-start" in open(f"{work}/calls.log").read())
    t = time.monotonic(); p.send_signal(signal.SIGTERM); p.wait()
    sigterm.append((time.monotonic() - t) * 1000)

    for kind, figures in (("worker", worker), ("host", host)):
        p = start(f"{work}/hold.d", f"{work}/snapshot.sh")
        wait_for(lambda: os.path.exists(f"{work}/frozen") and not lock_free())
        victim = int(open(f"{work}/worker.pid").read()) if kind == "worker" else p.pid
        t = time.monotonic(); os.kill(victim, signal.SIGKILL)
        wait_for(lock_free)
        figures.append((time.monotonic() - t) * 1000)
        if kind == "worker":
            p.send_signal(signal.SIGTERM)
        p.wait()
        subprocess.run([bin, "recover"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

m = statistics.median
print(f"pluginhost bench/signals.sh — medians over {n} runs (ms)")
print(f"  SIGTERM during a 30 s quiesce → host exited        {m(sigterm):8.1f}  (max {max(sigterm):.1f})")
print(f"  SIGKILL of a worker → its hold's lock free         {m(worker):8.1f}  (max {max(worker):.1f})")
print(f"  SIGKILL of the host → the hold's lock free         {m(host):8.1f}  (max {max(host):.1f})")
PY
