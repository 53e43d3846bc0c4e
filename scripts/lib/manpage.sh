#!/usr/bin/env bash
# Generates pluginhost.8 from the commands themselves, with swift-argument-parser's
# generate-manual tool (the tool behind its `swift package generate-manual` plugin), run on the
# built binary: scripts/lib/manpage.sh SCRATCH_PATH BINARY LIBRARY_DIR OUTPUT_DIR
# The hidden internal commands (__guard, __worker, __session, __docs) are left out, and a
# FILES section is added.
set -euo pipefail
scratch=$1 binary=$2 libraries=$3 output=$4
# Builds the tool only (its --help makes the plugin stop there).
swift package --scratch-path "$scratch" generate-manual --help >/dev/null
tool=$(find "$scratch" -name generate-manual-tool -type f -perm -u+x | head -n 1)
[ -n "$tool" ] || { echo "swift-argument-parser's generate-manual tool was not built" >&2; exit 1; }
mkdir -p "$output" "$output.raw"
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%d)
LD_LIBRARY_PATH=$libraries "$tool" "$binary" --section 8 --date "$date" \
    --authors "pluginhost maintainers<pluginhost@localhost>" -o "$output.raw"
awk '
    /^\.It Em __/ { skipping = 1; next }
    /^\.It Em / { skipping = 0 }
    /^\.Sh "EXIT STATUS"/ {
        skipping = 0
        print ".Sh FILES"
        print ".Bl -tag -width 6n"
        print ".It Pa /etc/azure/VMSnapshotScriptPluginConfig.json"
        print "The Azure script config: pre- and post-script, retries, timeouts (root, mode 600)."
        print ".It Pa /etc/pluginhost/pluginhost.json"
        print "Host settings: mounts, skipMounts, maxFrozenSeconds, keepReports."
        print ".It Pa /etc/pluginhost/plugins.d/"
        print "Plugin manifests; the bundled plugins are in /usr/lib/pluginhost/plugins."
        print ".It Pa /run/pluginhost/"
        print "The lock, the freeze journal and the two-phase session socket."
        print ".It Pa /var/lib/pluginhost/"
        print "The last report and the kept reports (history)."
        print ".It Pa pluginhost-recover.timer"
        print "Every 30 s, thaws what a dead operation left frozen."
        print ".It Pa /usr/share/doc/pluginhost/README.md.gz"
        print "The full documentation: config rules, error codes, plugins, agents."
        print ".El"
    }
    !skipping { print }
' "$output.raw/pluginhost.8" >"$output/pluginhost.8"
rm -rf "$output.raw"
