#!/usr/bin/env bash
# Consistency groups, as root: what the barriers cost. For each group size (default 1 8 32 64),
# that many members on this machine — each its own `pluginhost run` with its own run directory and
# its own small loop filesystem — take R group snapshots (default 5) through a single-node etcd
# started here on loopback. Per operation:
#
#   group window    first FIFREEZE of any member → last FITHAW of any member
#   own window      a member's FIFREEZE + snapshot command + FITHAW (what it would take alone)
#   overhead        group window - the slowest member's own window: what the barriers add
#
# and, per barrier, how long a member waited (with one member: the client's own cost, an etcd
# transaction and a watch event). Members run on one machine, so their CLOCK_MONOTONIC times
# (the report's group.originMonotonicNs + each step's startMs) share one axis. Medians; asserts
# nothing. etcd's data is on tmpfs (/dev/shm) unless ETCD_DATA says otherwise: on this one
# machine its disk is the one the members' loop filesystems flush to when they freeze, all at
# once, which a real etcd (on machines of its own) does not share. KEEP=DIR keeps the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
SIZES=${*:-1 8 32 64}
R=${R:-5}

swift build -q -c release --product pluginhost
BIN=$(swift build -c release --show-bin-path)/pluginhost
WORK=$(mktemp -d /tmp/pluginhost-group-bench-XXXXXX)
chmod 755 "$WORK"
ETCD_DATA=${ETCD_DATA:-/dev/shm/pluginhost-group-bench-etcd-$$}
MAX=0
for n in $SIZES; do [ "$n" -gt "$MAX" ] && MAX=$n; done
ETCD_PID=""
cleanup() {
    [ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null || true
    for i in $(seq "$MAX"); do
        fsfreeze -u "$WORK/m$i/mnt" 2>/dev/null || true
        umount "$WORK/m$i/mnt" 2>/dev/null || true
    done
    rm -rf "$WORK" "$ETCD_DATA"
}
trap cleanup EXIT

PORT=$((22000 + RANDOM % 8000))
etcd --name bench --data-dir "$ETCD_DATA" --listen-client-urls "http://127.0.0.1:$PORT" \
    --advertise-client-urls "http://127.0.0.1:$PORT" --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" --initial-cluster "bench=http://127.0.0.1:$((PORT + 1))" \
    >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$PORT" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

for i in $(seq "$MAX"); do
    mkdir -p "$WORK/m$i/mnt" "$WORK/m$i/run" "$WORK/m$i/state" "$WORK/m$i/plugins.d"
    truncate -s 16M "$WORK/m$i/fs.img"
    mkfs.ext4 -q "$WORK/m$i/fs.img"
    mount -o loop "$WORK/m$i/fs.img" "$WORK/m$i/mnt"
done
mkdir -p "$WORK/etc"
printf '#!/bin/sh\nexit 0\n' >"$WORK/etc/script.sh"
chmod 700 "$WORK/etc/script.sh"
printf '{"preScriptLocation": "%s", "postScriptLocation": "%s", "timeoutInSeconds": 60}\n' "$WORK/etc/script.sh" "$WORK/etc/script.sh" >"$WORK/etc/config.json"
chmod 600 "$WORK/etc/config.json"
# SCRIPTS=1: every member runs a pre- and a post-script (an empty one); by default none (no
# --config; /etc/azure/VMSnapshotScriptPluginConfig.json must then be absent), so that members
# that thawed first do not spawn scripts while the others still wait: on one machine their CPU
# is shared, as it would not be across machines.
CONFIG=""
[ -n "${SCRIPTS:-}" ] && CONFIG="--config $WORK/etc/config.json"

: >"$WORK/results.jsonl"
for n in $SIZES; do
    for rep in $(seq "$R"); do
        group="bench$n-$rep-$RANDOM"
        pids=()
        for i in $(seq "$n"); do
            PLUGINHOST_RUN_DIR=$WORK/m$i/run PLUGINHOST_STATE_DIR=$WORK/m$i/state \
                "$BIN" run --json $CONFIG --plugins-dir "$WORK/m$i/plugins.d" --mount "$WORK/m$i/mnt" \
                --group "$group" --member "m$i" --members "$n" --etcd "http://127.0.0.1:$PORT" --group-timeout 120 \
                -- /bin/true >"$WORK/m$i/report.json" 2>"$WORK/m$i/stderr" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid" || true; done
        # Each member's freeze guard lets go of the machine's lock just after its host exits.
        for i in $(seq "$n"); do flock "$WORK/m$i/run/lock" true; done
        [ -n "${KEEP:-}" ] && for i in $(seq "$n"); do cp "$WORK/m$i/report.json" "$KEEP/n$n-r$rep-m$i.json"; done
        python3 - "$WORK" "$n" >>"$WORK/results.jsonl" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
reports = []
for i in range(1, n + 1):
    try:
        reports.append(json.load(open(f"{work}/m{i}/report.json")))
    except Exception as error:
        print(json.dumps({"n": n, "ok": False, "errors": [f"m{i}: no report ({error}): " + open(f"{work}/m{i}/stderr").read()[-300:]]}))
        sys.exit()
def step(r, name):
    s = next(s for s in r["steps"] if s["name"] == name)
    origin = r["group"]["originMonotonicNs"] / 1e6
    return origin + s["startMs"], origin + s["startMs"] + s["durationMs"], s["durationMs"]
ok = all(r["exitStatus"] in (0, 1) and r["group"]["outcome"] == "completed" for r in reports)
if not ok:
    print(json.dumps({"n": n, "ok": False, "errors": sorted({e["code"] + ": " + e["message"][:160] for r in reports for e in r["errors"]})[:3]}))
    sys.exit()
first_freeze = min(step(r, "freeze")[0] for r in reports)
last_thaw = max(step(r, "thaw")[1] for r in reports)
own = [step(r, "freeze")[2] + r["snapshot"]["durationMs"] + step(r, "thaw")[2] for r in reports]
# The frozen barrier: from the last member's arrival to the first member learning that all had
# arrived (etcd: the last transaction, the passed key, one watch event), and from the first member
# learning it to the last (waking 2n processes on this machine's cores).
frozen = [(step(r, "group: all frozen")[0], step(r, "group: all frozen")[1]) for r in reports]
latency = min(end for _, end in frozen) - max(start for start, _ in frozen)
fanout = max(end for _, end in frozen) - min(end for _, end in frozen)
waits = {b["stage"]: [] for b in reports[0]["group"]["barriers"]}
for r in reports:
    for b in r["group"]["barriers"]:
        waits[b["stage"]].append(b["waitMs"])
print(json.dumps({"n": n, "ok": True, "groupWindow": last_thaw - first_freeze, "slowestOwn": max(own),
                  "overhead": last_thaw - first_freeze - max(own), "latency": latency, "fanout": fanout,
                  "frozenWait": max(waits["frozen"]), "snapshottedWait": max(waits["snapshotted"]),
                  "minFrozenWait": min(waits["frozen"]), "minSnapshottedWait": min(waits["snapshotted"])}))
PY
    done
done

python3 - "$WORK/results.jsonl" "$R" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
m = statistics.median
print(f"pluginhost bench/group.sh — medians over {sys.argv[2]} group operations per size (ms)")
print(f"{'members':>7} {'group window':>13} {'slowest own':>12} {'overhead':>9} {'wait frozen':>12} {'wait snapshotted':>17} {'etcd':>6} {'fan-out':>8} {'failed':>7}")
for n in sorted({r["n"] for r in rows}):
    good = [r for r in rows if r["n"] == n and r["ok"]]
    bad = [r for r in rows if r["n"] == n and not r["ok"]]
    if not good:
        print(f"{n:7} {'-':>13} {'-':>12} {'-':>9} {'-':>12} {'-':>17} {'-':>6} {'-':>8} {len(bad):7}  {bad[0].get('errors')}")
        continue
    f = lambda k: m([r[k] for r in good])
    print(f"{n:7} {f('groupWindow'):13.1f} {f('slowestOwn'):12.1f} {f('overhead'):9.1f} {f('frozenWait'):12.1f} {f('snapshottedWait'):17.1f} {f('latency'):6.1f} {f('fanout'):8.1f} {len(bad):7}")
    for r in bad: print(f"        failed: {r.get('errors')}")
print("wait frozen/snapshotted: the longest a member waited at that barrier (with 1 member: the client's cost per barrier).")
print("etcd: last arrival at \"all frozen\" -> first member told; fan-out: first member told -> last member told.")
import os
print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
PY
