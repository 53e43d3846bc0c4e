#!/usr/bin/env bash
# Plugin figures, as root: verification and worker start-up of 10 plugins, and
# `pluginhost list` of 20. Medians over N runs (default 20). Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-20}
# Plugin libraries are padded to PAD bytes (default 1 MB, about a bundled Swift plugin; 0 for
# the size of a small C plugin), so that hashing costs what it would.
PAD=${PAD:-1000000}

swift build -q -c release --product pluginhost
BIN=$(swift build -c release --show-bin-path)/pluginhost
WORK=$(mktemp -d /tmp/pluginhost-bench-XXXXXX)
chmod 755 "$WORK"
cleanup() { fsfreeze -u "$WORK/mnt" 2>/dev/null || true; umount "$WORK/mnt" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/lib" "$WORK/ten" "$WORK/twenty" "$WORK/mnt" "$WORK/run" "$WORK/state"
export PLUGINHOST_RUN_DIR=$WORK/run PLUGINHOST_STATE_DIR=$WORK/state

# 20 distinct plugin libraries.
for i in $(seq -w 1 20); do
    cc -shared -fPIC -O2 -DBEHAVIOUR_GOOD "-DPLUGIN_NAME=\"p$i\"" -I Sources/PluginABI/include \
        -o "$WORK/lib/libp$i.so" Tests/Fixtures/fixture_plugin.c
    if [ "$PAD" -gt 0 ]; then
        head -c "$PAD" /dev/urandom >"$WORK/lib/libp$i.so.pad"
        objcopy --add-section .payload="$WORK/lib/libp$i.so.pad" "$WORK/lib/libp$i.so" && rm "$WORK/lib/libp$i.so.pad"
    fi
    "$BIN" plugin add "$WORK/lib/libp$i.so" --plugins-dir "$WORK/twenty" --order "$((10#$i))" >/dev/null
    [ "$((10#$i))" -le 10 ] && "$BIN" plugin add "$WORK/lib/libp$i.so" --plugins-dir "$WORK/ten" --order "$((10#$i))" >/dev/null
done
# One large plugin (BIG bytes, default 200 MB): verification copies it once into a sealed memfd
# and hashes that copy; checks with it minus checks without plugins gives the copy + hash rate.
BIG=${BIG:-200000000}
mkdir -p "$WORK/big" "$WORK/none"
cc -shared -fPIC -O2 -DBEHAVIOUR_GOOD '-DPLUGIN_NAME="big"' -I Sources/PluginABI/include -o "$WORK/lib/libbig.so" Tests/Fixtures/fixture_plugin.c
head -c "$BIG" /dev/urandom >"$WORK/lib/libbig.so.pad"
objcopy --add-section .payload="$WORK/lib/libbig.so.pad" "$WORK/lib/libbig.so" && rm "$WORK/lib/libbig.so.pad"
"$BIN" plugin add "$WORK/lib/libbig.so" --plugins-dir "$WORK/big" --order 10 >/dev/null
truncate -s 64M "$WORK/fs.img"; mkfs.ext4 -q "$WORK/fs.img"; mount -o loop "$WORK/fs.img" "$WORK/mnt"

wall() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "scale=3; ($e - $s) / 1000000" | bc; }
: >"$WORK/list20.txt"; : >"$WORK/list10.txt"; : >"$WORK/reports.jsonl"; : >"$WORK/big.jsonl"; : >"$WORK/none.jsonl"; : >"$WORK/big.cpu"; : >"$WORK/none.cpu"
for _ in $(seq "$N"); do
    wall "$BIN" list --plugins-dir "$WORK/twenty" >>"$WORK/list20.txt"
    wall "$BIN" list --plugins-dir "$WORK/ten" >>"$WORK/list10.txt"
    "$BIN" run --plugins-dir "$WORK/ten" --mount "$WORK/mnt" --json -- /bin/true | tr -d '\n' >>"$WORK/reports.jsonl"
    echo >>"$WORK/reports.jsonl"
    { /usr/bin/time -a -o "$WORK/big.cpu" -f "%U %S" "$BIN" run --plugins-dir "$WORK/big" --mount "$WORK/mnt" --json -- /bin/true || true; } | tr -d '\n' >>"$WORK/big.jsonl"
    echo >>"$WORK/big.jsonl"
    # exits 1: no application step, so filesystem-consistent
    { /usr/bin/time -a -o "$WORK/none.cpu" -f "%U %S" "$BIN" run --plugins-dir "$WORK/none" --mount "$WORK/mnt" --json -- /bin/true || true; } | tr -d '\n' >>"$WORK/none.jsonl"
    echo >>"$WORK/none.jsonl"
done
wall "$BIN" --help >/dev/null
: >"$WORK/empty.txt"; for _ in $(seq "$N"); do wall "$BIN" list --plugins-dir "$WORK/lib/none" >>"$WORK/empty.txt"; done

python3 - "$WORK" "$N" "$(stat -c %s "$WORK/lib/libp01.so")" "$(stat -c %s "$WORK/lib/libbig.so")" <<'PY'
import json, statistics, sys
work, n, size, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = statistics.median
read = lambda name: [float(x) for x in open(f"{work}/{name}") if x.strip()]
reports = [json.loads(l) for l in open(f"{work}/reports.jsonl") if l.strip()]
step = lambda r, name: next(s["durationMs"] for s in r["steps"] if s["name"] == name)
checks = [step(r, "checks") for r in reports]
prepare = [step(r, "prepare") for r in reports]
quiesce = [step(r, "quiesce") for r in reports]
assert all(len(r["plugins"]) == 10 and r["result"] == "succeeded" for r in reports), "a run failed"
bigs = [json.loads(l) for l in open(f"{work}/big.jsonl") if l.strip()]
nones = [json.loads(l) for l in open(f"{work}/none.jsonl") if l.strip()]
assert all(r["result"] == "succeeded" for r in bigs) and all(r["snapshotTaken"] for r in nones), "a run failed"
hashing = [step(b, "checks") - m([step(r, "checks") for r in nones]) for b in bigs]
rows = [
    ("pluginhost list, no plugins (process start-up)", read("empty.txt")),
    ("pluginhost list, 10 plugins (wall)", read("list10.txt")),
    ("pluginhost list, 20 plugins (wall)", read("list20.txt")),
    (f"run, 10 plugins: checks step (verify 10: owner, mode, SHA-256 of {size // 1024} KiB)", checks),
    ("run, 10 plugins: prepare step (10 workers: fork, dlopen, create)", prepare),
    ("  verification + worker start-up of 10 (checks + prepare)", [c + p for c, p in zip(checks, prepare)]),
    ("run, 10 plugins: quiesce step (10 orders, one after another)", quiesce),
]
print(f"pluginhost bench/plugins.sh — medians over {n} runs (ms)")
print(f"{'figure':72} {'median':>8} {'min':>8} {'max':>8}")
for name, v in rows:
    print(f"{name:72} {m(v):8.2f} {min(v):8.2f} {max(v):8.2f}")
rate = lambda ms: big / 1e6 / (ms / 1000)
print(f"{f'copy into a sealed memfd + SHA-256 of a {big / 1e6:.0f} MB library, wall (MB/s)':72} {rate(m(hashing)):8.0f} {rate(max(hashing)):8.0f} {rate(min(hashing)):8.0f}")
# The same from CPU time (user + sys of the whole run, with the big plugin minus without any):
# what it costs when the machine is busy with other work, as the shared test machine is.
cpu = lambda name: [sum(map(float, l.split())) * 1000 for l in open(f"{work}/{name}") if l[:1].isdigit()]
cpus = [b - m(cpu("none.cpu")) for b in cpu("big.cpu")]
print(f"{f'  the same from CPU time (user + sys), MB/s':72} {rate(m(cpus)):8.0f} {rate(max(cpus)):8.0f} {rate(min(cpus)):8.0f}")
PY
