#!/usr/bin/env bash
# PostgreSQL write stall, as root: a PostgreSQL 15 cluster on a loop-mounted ext4 image
# under `pgbench -c 4`, and N operations (default 10) of `pluginhost run` with the postgresql
# plugin (checkpoint mode) whose snapshot command copies the image while frozen. Prints, per
# operation, the write stall the load saw (its longest transaction overlapping the operation),
# the freeze window, the time from the operation's start to the freeze, and medians.
# Goal: write stall <= freeze window + 20 ms. Prints figures; asserts nothing.
#
#   sudo bench/postgresql-stall.sh            # builds release into .build-bench first
#   BIN_DIR=/path/to/release sudo bench/postgresql-stall.sh    # pluginhost + libpluginhost-postgresql.so there
#   env: N (operations, 10), CLIENTS (4), SCALE (pgbench scale, 10), DB_SCRIPTS (start/stop-postgres.sh),
#        SYNC_AFTER_QUIESCE=1: an experiment — a shell plugin ordered after postgresql runs
#        `sync -f` on the filesystem, so that FIFREEZE finds only what was written since
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-10}
CLIENTS=${CLIENTS:-4}
SCALE=${SCALE:-10}
WARMUP=2          # seconds of load before each operation
SPAN=10           # seconds of load from the operation's start (it takes 1–3 s)
export PATH=$PATH:/usr/sbin:/sbin

DB_SCRIPTS=${DB_SCRIPTS:-$PWD/scripts/db}   # the repository's throwaway test servers

if [ -z "${BIN_DIR:-}" ]; then
    swift build -q -c release --scratch-path .build-bench --product pluginhost >&2
    swift build -q -c release --scratch-path .build-bench --product pluginhost-postgresql >&2
    swift build -q -c release --scratch-path .build-bench --product pluginhost-shell >&2
    BIN_DIR=$(swift build -c release --scratch-path .build-bench --show-bin-path)
fi
BIN=$BIN_DIR/pluginhost
[ -x "$BIN" ] && [ -f "$BIN_DIR/libpluginhost-postgresql.so" ] || { echo "no pluginhost or libpluginhost-postgresql.so in $BIN_DIR" >&2; exit 1; }
PGBIN=/usr/lib/postgresql/15/bin

WORK=$(mktemp -d /tmp/pluginhost-pgstall-XXXXXX)
chmod 755 "$WORK"
MNT=$WORK/mnt
LOAD_PID=
# Everything this script made, undone in reverse order, whatever happened: the load first (it
# is ours, by pid), a thaw before anything touches the filesystem, the server, the mount.
cleanup() {
    set +e
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
    if mountpoint -q "$MNT"; then
        fsfreeze -u "$MNT" 2>/dev/null
        POSTGRES_DIR=$MNT/pg bash "$DB_SCRIPTS/stop-postgres.sh" --keep 2>/dev/null
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "setting up: ext4 image, PostgreSQL 15, pgbench -i -s $SCALE" >&2
mkdir -p "$MNT" "$WORK/lib" "$WORK/plugins.d" "$WORK/run" "$WORK/state" "$WORK/logs"
chmod 755 "$MNT" "$WORK/lib" "$WORK/plugins.d"
truncate -s 4G "$WORK/fs.img"
mkfs.ext4 -q "$WORK/fs.img"
mount -o loop "$WORK/fs.img" "$MNT"
chmod 755 "$MNT"
ENV_LINES=$(POSTGRES_DIR=$MNT/pg bash "$DB_SCRIPTS/start-postgres.sh")
PGPORT=$(sed -n 's/^PGPORT=//p' <<<"$ENV_LINES")
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
"$PGBIN/pgbench" -i -q -s "$SCALE" >"$WORK/logs/init.log" 2>&1
# Settle: the freshly loaded tables on disk, as on a server that has been running a while
# (otherwise the first operation's flush writes them all back while the load runs).
"$PGBIN/psql" -X -q -c CHECKPOINT
sync -f "$MNT"

install -m 0755 "$BIN_DIR/libpluginhost-postgresql.so" "$WORK/lib/"
export PLUGINHOST_RUN_DIR=$WORK/run PLUGINHOST_STATE_DIR=$WORK/state
"$BIN" plugin add "$WORK/lib/libpluginhost-postgresql.so" --plugins-dir "$WORK/plugins.d" --name postgresql \
    --order 10 --timeout 60 --config "{\"conninfo\": \"host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres\", \"mode\": \"checkpoint\"}" >&2
if [ "${SYNC_AFTER_QUIESCE:-0}" = 1 ]; then
    install -m 0755 "$BIN_DIR/libpluginhost-shell.so" "$WORK/lib/"
    "$BIN" plugin add "$WORK/lib/libpluginhost-shell.so" --plugins-dir "$WORK/plugins.d" --name resync \
        --order 20 --timeout 60 --config "{\"quiesce\": [\"/usr/bin/sync\", \"-f\", \"$MNT\"], \"resume\": [\"/bin/true\"]}" >&2
fi
# The snapshot: a sparse copy of the image, taken while frozen (the image file is on /tmp, not frozen).
printf '#!/bin/sh\nexec cp --sparse=always "%s" "%s"\n' "$WORK/fs.img" "$WORK/copy.img" >"$WORK/snapshot.sh"
chmod 700 "$WORK/snapshot.sh"

now_us() { date +%s%6N; }
: >"$WORK/ops.tsv"
for op in $(seq "$N"); do
    rm -f "$WORK/copy.img"
    # One pgbench per operation, its log (-l: one line per transaction) on /tmp, not frozen. It
    # must end by itself (-T): killed, it would lose the log lines it still buffers.
    "$PGBIN/pgbench" -n -c "$CLIENTS" -j 2 -T $((WARMUP + SPAN)) -l --log-prefix="$WORK/logs/pgbench.$op" \
        >"$WORK/logs/pgbench.$op.out" 2>&1 &
    LOAD_PID=$!
    sleep "$WARMUP"
    start=$(now_us)
    status=0
    "$BIN" run --plugins-dir "$WORK/plugins.d" --mount "$MNT" --json -- "$WORK/snapshot.sh" >"$WORK/report.$op.json" || status=$?
    end=$(now_us)
    wait "$LOAD_PID" || { echo "pgbench failed during operation $op:" >&2; cat "$WORK/logs/pgbench.$op.out" >&2; exit 1; }
    LOAD_PID=
    printf '%s\t%s\t%s\t%s\n' "$op" "$start" "$end" "$status" >>"$WORK/ops.tsv"
    echo "operation $op: exit $status" >&2
done

python3 - "$WORK" "$CLIENTS" "$SCALE" <<'PY'
import datetime, glob, json, statistics, sys
work, clients, scale = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
for line in open(f"{work}/ops.tsv"):
    op, start, end, status = line.split()
    start, end = int(start), int(end)
    report = json.load(open(f"{work}/report.{op}.json"))
    # pgbench -l: client_id transaction_no latency_us script_no epoch_s epoch_us
    txns = []
    for path in glob.glob(f"{work}/logs/pgbench.{op}.[0-9]*"):
        for entry in open(path):
            f = entry.split()
            done = int(f[4]) * 1_000_000 + int(f[5])
            txns.append((done - int(f[2]), done, int(f[2])))
    during = [lat for begin, done, lat in txns if begin < end and done > start]
    before = [lat for begin, done, lat in txns if done <= start]
    covered = any(done >= end for _, done, _ in txns)
    step = {s["name"]: s for s in report["steps"]}
    freeze = report["freeze"]
    ioctl_freeze = sum(m.get("freezeMs") or 0 for m in freeze["mounts"])
    starts = [m["freezeStartMs"] for m in freeze["mounts"] if m.get("freezeStartMs") is not None]
    plugin = next(c for p in report["plugins"] if p["name"] == "postgresql" for c in p["calls"] if c["function"] == "quiesce")
    to_freeze = min(starts) if starts else step["freeze"]["startMs"] + step["freeze"]["durationMs"] - ioctl_freeze
    # The freeze on the wall clock: the report's startedAt is read at the operation's origin (ms).
    origin = datetime.datetime.strptime(report["startedAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    frozen_from = origin.timestamp() * 1e6 + to_freeze * 1000
    frozen_to = frozen_from + freeze["windowMs"] * 1000
    overlapping = [(begin, done, lat) for begin, done, lat in txns if begin < end and done > start]
    worst = max(overlapping, key=lambda t: t[2]) if overlapping else None
    outside = [lat for begin, done, lat in overlapping if done <= frozen_from or begin >= frozen_to]
    rows.append({
        "op": int(op), "exit": int(status), "consistency": report["consistency"],
        "stall": max(during) / 1000 if during else float("nan"),
        "window": freeze["windowMs"],
        # When the first FIFREEZE began: the report's freezeStartMs where the host records it;
        # else an upper bound, the freeze step's end minus the FIFREEZE time (the rest of the
        # step is the guard's reply).
        "to_freeze": to_freeze,
        # When the longest transaction began, from the first FIFREEZE (negative: before it).
        "stall_at": (worst[0] - frozen_from) / 1000 if worst else float("nan"),
        # The longest transaction of the operation that does not overlap the freeze window.
        "stall_outside": max(outside) / 1000 if outside else float("nan"),
        "to_freeze_exact": bool(starts),
        "freeze_step_start": step["freeze"]["startMs"],
        "checkpoint": float(plugin["details"]["checkpoint_ms"]),
        "quiesce": step["quiesce"]["durationMs"],
        "prepare": step["prepare"]["durationMs"] if "prepare" in step else float("nan"),
        "snapshot": report["snapshot"]["durationMs"],
        "ioctls": freeze["ioctlMs"],
        # The window's part that is neither the snapshot command nor the ioctls: the host's own.
        "host_gap": freeze["windowMs"] - freeze["ioctlMs"] - report["snapshot"]["durationMs"],
        "steps": [(s["name"], s["startMs"], s["durationMs"]) for s in report["steps"]],
        "operation": report["durationMs"],
        "wall": (end - start) / 1000,
        "before_max": max(before) / 1000 if before else float("nan"),
        "before_median": statistics.median(before) / 1000 if before else float("nan"),
        "tps": len(txns), "covered": covered,
    })

print(f"pluginhost bench/postgresql-stall.sh — PostgreSQL 15 on loop ext4, pgbench -c {clients} (scale {scale}),")
print("postgresql plugin in checkpoint mode, snapshot = cp --sparse=always of the image while frozen. All times in ms.")
if len(json.load(open(f"{work}/report.1.json"))["plugins"]) > 1:
    print("SYNC_AFTER_QUIESCE=1: a shell plugin runs `sync -f` after the CHECKPOINT (its time is in quiesce, not ckpt).")
print()
# (key, heading, format): one column each
cols = [("op", "op", "{:>3}"), ("exit", "exit", "{:>4}"), ("stall", "stall", "{:>7.1f}"), ("window", "window", "{:>7.1f}"),
        ("excess", "stall-window", "{:>12.1f}"), ("stall_at", "stall-at", "{:>8.1f}"), ("stall_outside", "unfrozen", "{:>8.1f}"), ("to_freeze", "to-freeze", "{:>9.1f}"), ("prepare", "prepare", "{:>7.1f}"), ("checkpoint", "ckpt", "{:>6.1f}"),
        ("quiesce", "quiesce", "{:>7.1f}"), ("snapshot", "snapshot", "{:>8.1f}"), ("ioctls", "ioctls", "{:>6.1f}"),
        ("host_gap", "host-gap", "{:>8.1f}"), ("operation", "operation", "{:>9.1f}"),
        ("wall", "wall", "{:>7.1f}"), ("before_max", "max-before", "{:>10.1f}"), ("before_median", "med-before", "{:>10.2f}")]
for row in rows:
    row["excess"] = row["stall"] - row["window"]
width = lambda fmt: len(fmt.format(0))
print("  ".join(heading.rjust(width(fmt)) for _, heading, fmt in cols))
for row in rows:
    note = "" if row["covered"] else "  (load ended before the operation did)"
    print("  ".join(fmt.format(row[key]) for key, _, fmt in cols) + note)
m = statistics.median
print("  ".join(["med".rjust(3), "".rjust(4)] + [fmt.format(m([r[key] for r in rows])) for key, _, fmt in cols[2:]]))
print()
print("stall       longest pgbench transaction that overlaps the operation (wall clock around `pluginhost run`)")
print("window      report.freeze.windowMs: first FIFREEZE start to last FITHAW end")
print("stall-at    when that longest transaction began, from the first FIFREEZE (report startedAt + to-freeze)")
print("unfrozen    longest transaction of the operation that does not overlap the freeze window")
if all(r["to_freeze_exact"] for r in rows):
    print("to-freeze   operation start to the first FIFREEZE: min(report.freeze.mounts[].freezeStartMs)")
else:
    print("to-freeze   operation start to the first FIFREEZE, at most: freeze step startMs + durationMs - FIFREEZE time")
    print("            (the rest of the freeze step is the guard's reply)")
print("            the freeze step itself starts at", f"{m([r['freeze_step_start'] for r in rows]):.1f} ms (median)")
print("prepare     the prepare step (plugin worker started, library loaded, plugin created)")
print("ckpt        the plugin's CHECKPOINT (checkpoint_ms); quiesce: the whole quiesce step")
print("snapshot    report.snapshot.durationMs (the cp); ioctls: report.freeze.ioctlMs (FIFREEZE + FITHAW)")
print("host-gap    window - ioctls - snapshot: the host's own share of the window (spawning the command, guard messages)")
print("operation   report.durationMs; wall: the `pluginhost run` process as this script timed it")
print("max-before, med-before: pgbench latency before the operation (the load's normal jitter)")
print()
print("steps (medians over the operations): name, startMs, durationMs")
names = [name for name, _, _ in rows[0]["steps"]]
for name in names:
    entries = [(start, duration) for r in rows for n, start, duration in r["steps"] if n == name]
    print(f"  {name:12} {m([e[0] for e in entries]):9.1f} {m([e[1] for e in entries]):9.1f}")
over = [r for r in rows if r["stall"] > r["window"] + 20]
print()
print(f"goal stall <= window + 20 ms: met in {len(rows) - len(over)} of {len(rows)} operations; "
      f"median stall - window = {m([r['excess'] for r in rows]):.1f} ms")
PY
