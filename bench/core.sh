#!/usr/bin/env bash
# Core figures, as root: host overhead per script phase against a direct spawn-and-wait of the
# same script; the freeze window against a raw FIFREEZE/FITHAW of the same loop filesystem; and
# the freeze window of 16 loop filesystems against 1, each with a writer running (independent
# filesystems freeze concurrently, so window(16)/window(1) should stay near 1). Medians over N
# runs (default 25; M, default 5, for the 16-filesystem figures). Prints a table; asserts
# nothing. BIN=path uses that binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-25}
M=${M:-5}
LOADED=16

if [ -z "${BIN:-}" ]; then
    swift build -q -c release --product pluginhost
    BIN=$(swift build -c release --show-bin-path)/pluginhost
fi
WORK=$(mktemp -d /tmp/pluginhost-bench-XXXXXX)
chmod 755 "$WORK"
WRITERS=()
cleanup() {
    # Thaw before anything else: a writer or an unmount would wait on a frozen filesystem.
    for mnt in "$WORK/mnt" "$WORK"/load/*/; do fsfreeze -u "$mnt" 2>/dev/null || true; done
    for pid in "${WRITERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for mnt in "$WORK/mnt" "$WORK"/load/*/; do
        for _ in 1 2 3 4 5; do umount "$mnt" 2>/dev/null && break; sleep 0.2; done
    done
    if grep -q " $WORK/" /proc/mounts; then echo "still mounted under $WORK: left in place" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE  # exit through the cleanup: nothing left frozen or mounted

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

# Under load: LOADED filesystems, a writer on each (buffered writes, never synced, as busy
# applications do), frozen by pluginhost 1 at a time and all together; and, for comparison, by
# fsfreeze one after another and all at once.
mkdir -p "$WORK/load"
MOUNTS=()
for i in $(seq "$LOADED"); do
    mkdir -p "$WORK/load/$i"
    truncate -s 128M "$WORK/load/$i.img"
    mkfs.ext4 -q "$WORK/load/$i.img"
    mount -o loop "$WORK/load/$i.img" "$WORK/load/$i"
    MOUNTS+=("$WORK/load/$i")
done
for mnt in "${MOUNTS[@]}"; do
    # SIGTERM ends the loop after the running dd (killed at once, the dd would keep the
    # filesystem busy at the unmount), so that the cleanup's wait covers the dd too.
    (trap 'exit 0' TERM; while :; do dd if=/dev/zero of="$mnt/load" bs=1M count=32 conv=notrunc status=none 2>/dev/null || true; done) &
    WRITERS+=($!)
done
sleep 2
one=(--mount "${MOUNTS[0]}")
all=()
for mnt in "${MOUNTS[@]}"; do all+=(--mount "$mnt"); done
: >"$WORK/load-1.jsonl"
: >"$WORK/load-all.jsonl"
for _ in $(seq "$M"); do
    { "$BIN" run --config "$WORK/etc/config.json" "${one[@]}" --json -- /bin/true || true; } | tr -d '\n' >>"$WORK/load-1.jsonl"
    echo >>"$WORK/load-1.jsonl"
    { "$BIN" run --config "$WORK/etc/config.json" "${all[@]}" --json -- /bin/true || true; } | tr -d '\n' >>"$WORK/load-all.jsonl"
    echo >>"$WORK/load-all.jsonl"
done
ms() { date +%s%N; }
: >"$WORK/raw.txt"
for _ in $(seq "$M"); do
    start=$(ms)
    for mnt in "${MOUNTS[@]}"; do fsfreeze -f "$mnt"; done
    for mnt in "${MOUNTS[@]}"; do fsfreeze -u "$mnt"; done
    middle=$(ms)
    pids=()
    for mnt in "${MOUNTS[@]}"; do fsfreeze -f "$mnt" & pids+=($!); done
    wait "${pids[@]}"
    pids=()
    for mnt in "${MOUNTS[@]}"; do fsfreeze -u "$mnt" & pids+=($!); done
    wait "${pids[@]}"
    end=$(ms)
    echo "$(( (middle - start) / 1000 )) $(( (end - middle) / 1000 ))" >>"$WORK/raw.txt"
done

python3 - "$WORK" "$N" "$LOADED" <<'PY'
import json, statistics, sys
work, n, loaded = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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

def windows(name):
    out = []
    for line in open(f"{work}/{name}"):
        if line.strip():
            report = json.loads(line)
            if report["freeze"] and report["freeze"].get("windowMs") is not None:
                out.append(report["freeze"]["windowMs"])
    return out
one, many = windows("load-1.jsonl"), windows("load-all.jsonl")
raw_seq = [int(l.split()[0]) / 1000 for l in open(f"{work}/raw.txt")]
raw_par = [int(l.split()[1]) / 1000 for l in open(f"{work}/raw.txt")]
print()
print(f"under load (a writer on each filesystem) — medians over {len(one)} runs (ms)")
print(f"{'figure':58} {'median':>9} {'min':>9} {'max':>9}")
for name, values in [
    ("pluginhost window(1)", one),
    (f"pluginhost window({loaded})", many),
    (f"fsfreeze -f then -u of {loaded}, one after another", raw_seq),
    (f"fsfreeze -f then -u of {loaded}, all at once", raw_par),
]:
    print(f"{name:58} {m(values):9.3f} {min(values):9.3f} {max(values):9.3f}")
print(f"{'window(' + str(loaded) + ') / window(1)':58} {m(many) / m(one):9.2f}")
PY
