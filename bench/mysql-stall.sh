#!/usr/bin/env bash
# MariaDB commit stall, as root: MariaDB 10.11 with its data directory on a
# loop-mounted ext4 image, under a write load of single-row autocommit INSERTs (InnoDB and MyISAM
# writers, each commit timed: Tests/Fixtures/mariadb_ack_writer.c), and N operations per way of
# quiescing, interleaved, of `pluginhost run` whose snapshot command copies the image while frozen:
#
#   plugin          the mysql plugin (BACKUP STAGE … BLOCK_COMMIT held from quiesce to resume)
#   prescript       an Azure-style pre-/post-script pair doing what Azure's MySQL workload script
#                   (VMBackup/main/workloadPatch/…/preMysqlMaster.sql, postMysqlMaster.sql in
#                   Azure/azure-linux-extensions) does: pre `FLUSH TABLES WITH READ LOCK; SET GLOBAL
#                   read_only = ON;`, post `SET GLOBAL read_only = OFF; UNLOCK TABLES;`. A pre-script
#                   must exit before the freeze, and the lock of a client that exits is released at
#                   once: what such a pre-script achieves is read_only = ON until the post-script —
#                   writes of users without READ ONLY ADMIN fail (error 1290, the load retries them
#                   every ms) and those of privileged users (root) go on.
#   prescript-held  what Azure's extension does when it runs that SQL itself: the client stays
#                   connected (`SELECT SLEEP(…)`) holding the read lock, the post-script kills it
#                   and then runs the post SQL. The server ends the dead client's session (and its
#                   lock) only when SLEEP notices, within 5 s.
#
# Prints, per operation and as medians per mode: the longest commit latency the load saw during the
# operation (per engine), how long commits were blocked (plugin: the report's commits_blocked_ms;
# all modes: the longest time in which no commit of an engine completed, from the load), and the
# freeze window (report.freeze.windowMs). Goal: blocked <= freeze window + 100 ms.
# Prints figures; asserts nothing.
#
#   sudo bench/mysql-stall.sh       # builds release into .build-bench-mysql first
#   env: N (operations per mode, 10), MODES ("plugin prescript prescript-held"),
#        INNODB_WRITERS (2), MYISAM_WRITERS (2), BIN_DIR (pluginhost + libpluginhost-mysql.so
#        already built there), DB_SCRIPTS (start/stop-mariadb.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
N=${N:-10}
MODES=${MODES:-plugin prescript prescript-held}
INNODB_WRITERS=${INNODB_WRITERS:-2}
MYISAM_WRITERS=${MYISAM_WRITERS:-2}
WARMUP=1.5        # seconds of load before each operation
TAIL=1            # seconds of load after it
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH   # the caller's PATH last: swift may live elsewhere

DB_SCRIPTS=${DB_SCRIPTS:-$PWD/scripts/db}   # the repository's throwaway test servers

if [ -z "${BIN_DIR:-}" ]; then
    swift build -q -c release --scratch-path .build-bench-mysql >&2
    BIN_DIR=$(swift build -c release --scratch-path .build-bench-mysql --show-bin-path)
fi
BIN=$BIN_DIR/pluginhost
[ -x "$BIN" ] && [ -f "$BIN_DIR/libpluginhost-mysql.so" ] || { echo "no pluginhost or libpluginhost-mysql.so in $BIN_DIR" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pluginhost-mystall-XXXXXX)
chmod 755 "$WORK"
# The copy goes to memory: written to /tmp, its writeback would compete with the database's fsyncs
# on the same disk during the next operations and blur what is measured.
COPY_DIR=$(mktemp -d /dev/shm/pluginhost-mystall-XXXXXX)
MDIR=$WORK/main          # MARIADB_DIR: socket, pid file, error log (not frozen)
MNT=$MDIR/data           # the data directory: the loop filesystem that gets frozen
WRITER_PIDS=()
# Everything this script made, undone in reverse order whatever happened: the writers (ours, by
# pid), a held client, a thaw before anything touches the filesystem, the server, the mount.
cleanup() {
    set +e
    for pid in "${WRITER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${WRITER_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [ -s "$WORK/held.pid" ] && kill "$(cat "$WORK/held.pid")" 2>/dev/null
    if mountpoint -q "$MNT"; then
        fsfreeze -u "$MNT" 2>/dev/null
        MARIADB_DIR=$MDIR bash "$DB_SCRIPTS/stop-mariadb.sh" --keep 2>/dev/null
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    rm -rf "$WORK" "$COPY_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "setting up: ext4 image, MariaDB, tables, the load's user" >&2
mkdir -p "$MNT" "$WORK/lib" "$WORK/plugins.d" "$WORK/no-plugins.d" "$WORK/azure" "$WORK/run" "$WORK/state" "$WORK/acks"
chmod 755 "$MDIR" "$WORK/lib" "$WORK/plugins.d" "$WORK/no-plugins.d" "$WORK/azure"
truncate -s 1G "$WORK/fs.img"
mkfs.ext4 -q "$WORK/fs.img"
mount -o loop "$WORK/fs.img" "$MNT"
rmdir "$MNT/lost+found"; chown mysql:mysql "$MNT"; chmod 755 "$MNT"
MARIADB_DIR=$MDIR bash "$DB_SCRIPTS/start-mariadb.sh" >"$WORK/server.env"
SOCK=$(sed -n 's/^MARIADB_SOCKET=//p' "$WORK/server.env")
sql() { mariadb --no-defaults -S "$SOCK" -uroot -N -B -e "$1"; }
# The load logs in as an application would: no READ ONLY ADMIN, so read_only applies to it.
sql "CREATE TABLE test.inno (id BIGINT PRIMARY KEY, payload VARCHAR(255) NOT NULL) ENGINE=InnoDB;
     CREATE TABLE test.myi (id BIGINT PRIMARY KEY, payload VARCHAR(255) NOT NULL) ENGINE=MyISAM;
     CREATE USER 'app'@'localhost' IDENTIFIED BY 'app'; GRANT SELECT, INSERT ON test.* TO 'app'@'localhost';"
cc -O2 $(pkg-config --cflags libmariadb) -o "$WORK/writer" Tests/Fixtures/mariadb_ack_writer.c $(pkg-config --libs libmariadb)

export PLUGINHOST_RUN_DIR=$WORK/run PLUGINHOST_STATE_DIR=$WORK/state
install -m 0755 "$BIN_DIR/libpluginhost-mysql.so" "$WORK/lib/"
"$BIN" plugin add "$WORK/lib/libpluginhost-mysql.so" --plugins-dir "$WORK/plugins.d" --name mysql --order 10 \
    --timeout 10 --config "{\"socket\": \"$SOCK\"}" >&2

# The Azure-style scripts (root's, 0700) and their config (0600), as the host requires.
script() { printf '%s\n' "$2" >"$WORK/azure/$1"; chmod 700 "$WORK/azure/$1"; }
MARIADB="/usr/bin/mariadb --no-defaults -S $SOCK -uroot"
script pre.sh "#!/bin/sh
# preMysqlMaster.sql without its SLEEP: the client exits, and FLUSH TABLES WITH READ LOCK with it.
exec $MARIADB -e 'FLUSH TABLES WITH READ LOCK; SET GLOBAL read_only = ON;'"
script post.sh "#!/bin/sh
exec $MARIADB -e 'SET GLOBAL read_only = OFF; UNLOCK TABLES;'"
script pre-held.sh "#!/bin/sh
# preMysqlMaster.sql as Azure's extension runs it: the session stays, holding the lock, in SLEEP.
setsid $MARIADB -e 'FLUSH TABLES WITH READ LOCK; SET GLOBAL read_only = ON; SELECT SLEEP(60);' </dev/null >/dev/null 2>&1 &
echo \$! >'$WORK/held.pid'
for i in \$(seq 500); do   # until the session sleeps, i.e. holds the lock (Azure polls an OUTFILE)
    [ \"\$($MARIADB -N -e \"SELECT COUNT(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(60)'\")\" = 1 ] && exit 0
    sleep 0.01
done
exit 1"
script post-held.sh "#!/bin/sh
# Azure's postMaster: kill the client that holds the lock, then postMysqlMaster.sql.
kill \$(cat '$WORK/held.pid') 2>/dev/null; rm -f '$WORK/held.pid'
exec $MARIADB -e 'SET GLOBAL read_only = OFF; UNLOCK TABLES;'"
config() {
    printf '{"pluginName": "ScriptRunner", "preScriptLocation": "%s", "postScriptLocation": "%s",
  "preScriptParams": [], "postScriptParams": [], "preScriptNoOfRetries": 0, "postScriptNoOfRetries": 0,
  "timeoutInSeconds": 30, "continueBackupOnFailure": true, "fsFreezeEnabled": true}\n' "$WORK/azure/$2" "$WORK/azure/$3" >"$WORK/azure/$1"
    chmod 600 "$WORK/azure/$1"
}
config prescript.json pre.sh post.sh
config prescript-held.json pre-held.sh post-held.sh

# The snapshot: a sparse copy of the image while frozen (neither file is on the frozen filesystem).
printf '#!/bin/sh\nexec /bin/cp --sparse=always "%s" "%s"\n' "$WORK/fs.img" "$COPY_DIR/copy.img" >"$WORK/snapshot.sh"
chmod 700 "$WORK/snapshot.sh"

now_us() { date +%s%6N; }
: >"$WORK/ops.tsv"
for op in $(seq "$N"); do
    for mode in $MODES; do
        sql "SET GLOBAL read_only = OFF; TRUNCATE TABLE test.inno; TRUNCATE TABLE test.myi;"
        WRITER_PIDS=()
        w=0
        for table in $(printf 'inno %.0s' $(seq "$INNODB_WRITERS")) $(printf 'myi %.0s' $(seq "$MYISAM_WRITERS")); do
            w=$((w + 1))
            "$WORK/writer" "$SOCK" app app "test.$table" $((w * 100000000 + 1)) "$WORK/acks/$op.$mode.$table.$w" \
                2>>"$WORK/writer.err" &
            WRITER_PIDS+=($!)
        done
        sleep "$WARMUP"
        case $mode in
            plugin) args=(--plugins-dir "$WORK/plugins.d") ;;
            *) args=(--config "$WORK/azure/$mode.json" --plugins-dir "$WORK/no-plugins.d") ;;
        esac
        start=$(now_us)
        status=0
        "$BIN" run "${args[@]}" --mount "$MNT" --json -- "$WORK/snapshot.sh" >"$WORK/report.$op.$mode.json" || status=$?
        end=$(now_us)
        rm -f "$COPY_DIR/copy.img"
        if [ "$mode" = prescript-held ]; then
            # The killed client's session (and its read lock) ends when SLEEP notices, within 5 s:
            # keep the load running until then, so that it sees the whole block.
            for _ in $(seq 100); do
                [ "$(sql "SELECT COUNT(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(60)'")" = 0 ] && break
                sleep 0.1
            done
        fi
        sleep "$TAIL"
        stopped=$(now_us)
        for pid in "${WRITER_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "a writer died during $mode operation $op:" >&2; cat "$WORK/writer.err" >&2; exit 1; }
            kill "$pid"; wait "$pid" 2>/dev/null || true
        done
        WRITER_PIDS=()
        readonly=$(sql "SELECT @@GLOBAL.read_only")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$mode" "$start" "$end" "$stopped" "$status" "$readonly" >>"$WORK/ops.tsv"
        echo "operation $op $mode: exit $status" >&2
    done
done

python3 - "$WORK" "$INNODB_WRITERS" "$MYISAM_WRITERS" <<'PY'
import glob, json, re, statistics, sys
work, inno_writers, myi_writers = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
for line in open(f"{work}/ops.tsv"):
    op, mode, start, end, stopped, status, readonly = line.split()
    start, end, stopped = int(start), int(end), int(stopped)
    report = json.load(open(f"{work}/report.{op}.{mode}.json"))
    per_engine = {}
    refused = 0
    for engine in ("inno", "myi"):
        acks = []  # (sent_us, acked_us)
        for path in glob.glob(f"{work}/acks/{op}.{mode}.{engine}.*"):
            for entry in open(path):
                f = entry.split()
                if len(f) == 4:
                    acks.append((int(f[1]), int(f[2])))
                    refused += int(f[3])
        during = [done - sent for sent, done in acks if sent < end and done > start]
        # The writers' end is a last "completion": a block that lasted until then still counts.
        done = sorted(d for _, d in acks) + [stopped]
        # The longest time in which no commit of this engine completed, among the gaps that
        # overlap the operation: how long commits were blocked, as the load saw it.
        gaps = [b - a for a, b in zip(done, done[1:]) if a < end and b > start]
        before = [d - s for s, d in acks if d <= start]
        per_engine[engine] = {
            "max": max(during) / 1000 if during else float("nan"),
            "gap": max(gaps) / 1000 if gaps else float("nan"),
            "before_median": statistics.median(before) / 1000 if before else float("nan"),
            "before_max": max(before) / 1000 if before else float("nan"),
            "commits": len(acks),
        }
    plugin = (report.get("plugins") or [{}])[0] if mode == "plugin" else {}
    calls = {c["function"]: c for c in plugin.get("calls", [])}
    details = lambda name: (calls.get(name) or {}).get("details") or {}
    blocked_report = float(details("resume").get("commits_blocked_ms", "nan"))
    window = (report.get("freeze") or {}).get("windowMs") or float("nan")
    load_blocked = max(per_engine["inno"]["gap"], per_engine["myi"]["gap"])
    rows.append({
        "op": int(op), "mode": mode, "exit": int(status), "consistency": report.get("consistency", "-"),
        "blocked": blocked_report if mode == "plugin" else load_blocked,
        "gap_inno": per_engine["inno"]["gap"], "gap_myi": per_engine["myi"]["gap"],
        "max_inno": per_engine["inno"]["max"], "max_myi": per_engine["myi"]["max"],
        "window": window, "refused": refused,
        "lock": float(details("quiesce").get("lock_acquire_ms", "nan")),
        # What ran before the freeze to quiesce: the plugin's quiesce step, or the pre-script.
        "prep": next((s["durationMs"] for s in report.get("steps", []) if s["name"] == ("quiesce" if mode == "plugin" else "pre-script")), float("nan")),
        "post": next((s["durationMs"] for s in report.get("steps", []) if s["name"] == ("resume" if mode == "plugin" else "post-script")), float("nan")),
        "operation": report.get("durationMs", float("nan")),
        "before_med": per_engine["inno"]["before_median"], "before_max": per_engine["inno"]["before_max"],
        "readonly_after": readonly,
    })

print(f"pluginhost bench/mysql-stall.sh — MariaDB 10.11 on loop ext4, {inno_writers} InnoDB + {myi_writers} MyISAM writers "
      "(single-row autocommit INSERTs, user without READ ONLY ADMIN),")
print("snapshot = cp --sparse=always of the image while frozen. All times in ms; operations of the modes interleaved.")
print()
cols = [("op", "op", "{:>3}"), ("mode", "mode", "{:<14}"), ("exit", "exit", "{:>4}"), ("blocked", "blocked", "{:>8.1f}"),
        ("window", "window", "{:>7.1f}"), ("excess", "blk-win", "{:>8.1f}"), ("gap_inno", "gap-inno", "{:>8.1f}"),
        ("gap_myi", "gap-myi", "{:>8.1f}"), ("max_inno", "max-inno", "{:>8.1f}"), ("max_myi", "max-myi", "{:>8.1f}"),
        ("lock", "lock", "{:>6.1f}"), ("prep", "pre", "{:>6.1f}"), ("post", "post", "{:>6.1f}"), ("refused", "refused", "{:>7}"), ("operation", "operation", "{:>9.1f}"),
        ("before_med", "med-before", "{:>10.2f}"), ("before_max", "max-before", "{:>10.1f}")]
for row in rows:
    row["excess"] = row["blocked"] - row["window"]
def width(fmt):
    return int(re.match(r"\{:[<>]?(\d+)", fmt).group(1))
print("  ".join(heading.rjust(width(fmt)) if ">" in fmt else heading.ljust(width(fmt)) for _, heading, fmt in cols))
modes = []
for row in rows:
    if row["mode"] not in modes:
        modes.append(row["mode"])
for mode in modes:
    for row in (r for r in rows if r["mode"] == mode):
        note = "" if row["readonly_after"] == "0" else "  (read_only still ON after the operation)"
        print("  ".join(fmt.format(row[key]) for key, _, fmt in cols) + note)
print()
m = lambda values: statistics.median(values)
print("medians")
print("  ".join(heading.rjust(width(fmt)) if ">" in fmt else heading.ljust(width(fmt))
                for _, heading, fmt in [cols[1]] + cols[3:]))
for mode in modes:
    mine = [r for r in rows if r["mode"] == mode]
    print("  ".join([cols[1][2].format(mode)] + [fmt.format(m([r[key] for r in mine])) for key, _, fmt in cols[3:]]))
print()
print("blocked     plugin: report plugins[mysql].resume commits_blocked_ms (BLOCK_COMMIT taken -> BACKUP STAGE END done);")
print("            pre-scripts: from the load, max(gap-inno, gap-myi)")
print("window      report.freeze.windowMs: first FIFREEZE start to last FITHAW end; blk-win = blocked - window")
print("gap-*       from the load: the longest time in which no commit of that engine completed, among the gaps")
print("            overlapping the operation (MyISAM writes wait from BACKUP STAGE FLUSH on, InnoDB commits from BLOCK_COMMIT)")
print("max-*       the longest commit latency (first attempt sent -> OK) of a commit overlapping the operation;")
print("            a refused attempt (read_only, error 1290) is retried every ms and counts in its commit's latency")
print("lock        plugin: lock_acquire_ms (BACKUP STAGE START -> BLOCK_COMMIT done)")
print("pre, post   the quiesce and resume steps (plugin), or the pre- and post-script steps, in the report")
print("refused     INSERTs refused by read_only during the operation (retried)")
print("operation   report.durationMs; med-before, max-before: InnoDB commit latency before the operation (normal jitter)")
print()
for mode in modes:
    mine = [r for r in rows if r["mode"] == mode]
    met = sum(1 for r in mine if r["blocked"] <= r["window"] + 100)
    print(f"goal blocked <= window + 100 ms, {mode}: met in {met} of {len(mine)} operations; "
          f"median blocked {m([r['blocked'] for r in mine]):.1f} ms, median window {m([r['window'] for r in mine]):.1f} ms")
PY
