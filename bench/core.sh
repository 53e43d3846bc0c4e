#!/usr/bin/env bash
# Core figures, as root: host overhead per script phase against a direct spawn-and-wait
# of the same script, and the freeze window against a raw FIFREEZE/FITHAW of the same loop
# filesystem. Medians over N runs (default 25). Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-25}

swift build -q -c release --product pluginhost
BIN=$(swift build -c release --show-bin-path)/pluginhost
WORK=$(mktemp -d /tmp/pluginhost-bench-XXXXXX)
chmod 755 "$WORK"
cleanup() { fsfreeze -u "$WORK/mnt" 2>/dev/null || true; umount "$WORK/mnt" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cc -O2 -o "$WORK/direct" bench/direct.c
mkdir -p "$WORK/mnt" "$WORK/etc" "$WORK/run" "$WORK/state"
truncate -s 256M "$WORK/fs.img"
mkfs.ext4 -q "$WORK/fs.img"
mount -o loop "$WORK/fs.img" "$WORK/mnt"
printf '#!/bin/sh\nexit 0\n' >"$WORK/etc/script.sh"
chmod 700 "$WORK/etc/script.sh"
cat >"$WORK/etc/config.json" <<JSON
{"preScriptLocation": "$WORK/etc/script.sh", "postScriptLocation": "$WORK/etc/script.sh", "timeoutInSeconds": 30}
JSON
chmod 600 "$WORK/etc/config.json"
export PLUGINHOST_RUN_DIR=$WORK/run PLUGINHOST_STATE_DIR=$WORK/state

: >"$WORK/reports.jsonl"
for _ in $(seq "$N"); do
    # Some dirty data, as a busy machine would have (the flush step writes it before the freeze).
    dd if=/dev/urandom of="$WORK/mnt/dirty" bs=1M count=8 status=none conv=notrunc
    "$BIN" run --config "$WORK/etc/config.json" --mount "$WORK/mnt" --json -- /bin/true | tr -d '\n' >>"$WORK/reports.jsonl"
    echo >>"$WORK/reports.jsonl"
done
"$WORK/direct" spawn "$WORK/etc/script.sh" "$N" >"$WORK/spawn.txt"
for _ in $(seq "$N"); do
    dd if=/dev/urandom of="$WORK/mnt/dirty" bs=1M count=8 status=none conv=notrunc
    "$WORK/direct" freeze "$WORK/mnt" /bin/true 1 >>"$WORK/freeze.txt"
done

python3 - "$WORK" "$N" <<'PY'
import json, statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
reports = [json.loads(line) for line in open(f"{work}/reports.jsonl") if line.strip()]
step = lambda r, name: next(s["durationMs"] for s in r["steps"] if s["name"] == name)
pre = [step(r, "pre-script") for r in reports]
post = [step(r, "post-script") for r in reports]
attempt = [r["scripts"][0]["attempts"][0]["durationMs"] for r in reports]
window = [r["freeze"]["windowMs"] for r in reports]
ioctls = [r["freeze"]["ioctlMs"] for r in reports]
snap = [r["snapshot"]["durationMs"] for r in reports]
gap = [w - i - s for w, i, s in zip(window, ioctls, snap)]
spawn = [float(x) for x in open(f"{work}/spawn.txt")]
raw = [list(map(float, l.split())) for l in open(f"{work}/freeze.txt")]
raw_window, raw_ioctls, raw_cmd = zip(*raw)
raw_gap = [w - i - c for w, i, c in raw]
m = statistics.median
print(f"pluginhost bench/core.sh — medians over {n} runs (ms)")
print(f"{'figure':58} {'median':>9} {'min':>9} {'max':>9}")
rows = [
    ("direct spawn-and-wait of the script", spawn),
    ("pre-script step (host)", pre),
    ("post-script step (host)", post),
    ("script attempt as the runner timed it", attempt),
    ("  overhead per script phase: pre-script step - direct", [p - m(spawn) for p in pre]),
    ("raw FIFREEZE + /bin/true + FITHAW window", raw_window),
    ("  raw window - (ioctls + command)", raw_gap),
    ("pluginhost freeze window", window),
    ("  pluginhost ioctls (FIFREEZE + FITHAW)", ioctls),
    ("  pluginhost snapshot command (/bin/true)", snap),
    ("  pluginhost window - (ioctls + snapshot command)", gap),
]
for name, values in rows:
    print(f"{name:58} {m(values):9.3f} {min(values):9.3f} {max(values):9.3f}")
PY
