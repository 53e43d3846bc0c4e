#!/usr/bin/env bash
# Fuzzes one parser or wire decoder with libFuzzer for SECONDS (default 60).
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER OPTION]...
#   scripts/fuzz.sh all 20          # every target in turn (what CI runs)
#
# Targets (fuzz/Targets/TARGET.swift): json, azure-config, manifest, host-config, guard-wire,
# worker-wire, session-wire. The engine's modules are built once with coverage instrumentation
# (swiftc -sanitize=fuzzer) in .build-fuzz; each target is linked against them. It starts from
# the seed corpus in fuzz/corpus/TARGET (kept in the repo) and adds what it finds to a work
# corpus in .build-fuzz/corpus/TARGET. A crash, a failed property (precondition) or an input
# that takes over 10 s (a hang) stops it with a non-zero exit; the input is saved in
# .build-fuzz/artifacts/TARGET/. Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH=/opt/swift/usr/bin:$PATH

targets=(json azure-config manifest host-config guard-wire worker-wire session-wire)
target=${1:?usage: scripts/fuzz.sh TARGET|all [SECONDS] [libFuzzer options] (targets: ${targets[*]})}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
if [ "$target" = all ]; then
    for one in "${targets[@]}"; do "$0" "$one" "$seconds" "$@"; done
    exit 0
fi
[ -f "fuzz/Targets/$target.swift" ] || { echo "unknown target $target (targets: ${targets[*]})" >&2; exit 2; }

scratch=.build-fuzz
# The engine and what it imports, instrumented. Building the PluginHost target builds its
# dependencies too (the wire, the support library, the shim, swift-log, swift-crypto).
swift build -q --scratch-path "$scratch" --target PluginHost -Xswiftc -sanitize=fuzzer
bin=$(swift build --scratch-path "$scratch" --show-bin-path)

# The objects of exactly those targets (never an executable's main).
objects=()
for module in PluginHost PluginHostWire PluginHostSupport CPluginHostShim Logging Crypto CryptoBoringWrapper \
              CCryptoBoringSSL CCryptoBoringSSLShims CXKCP CXKCPShims; do
    [ -d "$bin/$module.build" ] || continue
    while IFS= read -r -d '' object; do objects+=("$object"); done < <(find "$bin/$module.build" -name '*.o' -print0)
done
# The C modules they import.
modulemaps=()
for map in "$bin/CPluginHostShim.build/module.modulemap" "$scratch"/checkouts/swift-crypto/Sources/CCryptoBoringSSL*/include/module.modulemap; do
    [ -f "$map" ] && modulemaps+=(-Xcc "-fmodule-map-file=$map")
done

executable=$scratch/fuzz-$target
if [ ! -x "$executable" ] || [ -n "$(find "fuzz/Targets/$target.swift" "$bin/PluginHost.build" "$bin/PluginHostWire.build" \
        "$bin/PluginHostSupport.build" -newer "$executable" -print -quit)" ]; then
    swiftc -sanitize=fuzzer -parse-as-library -module-name "Fuzz_${target//-/_}" "fuzz/Targets/$target.swift" \
        -I "$bin/Modules" -I Sources/CPluginHostShim/include "${modulemaps[@]}" \
        "${objects[@]}" -lstdc++ -o "$executable"
fi

work=$scratch/corpus/$target
artifacts=$scratch/artifacts/$target
mkdir -p "$work" "$artifacts"
echo "fuzzing $target for $seconds s (seed corpus fuzz/corpus/$target: $(ls "fuzz/corpus/$target" | wc -l) inputs)" >&2
"$executable" "$work" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=16384 -artifact_prefix="$artifacts/" -print_final_stats=1 "$@"
echo "$target: 0 crashes, 0 hangs in $seconds s; work corpus $(ls "$work" | wc -l) inputs" >&2
