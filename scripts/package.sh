#!/usr/bin/env bash
# Builds the Debian package: dist/pluginhost_VERSION_ARCH.deb, with dpkg-deb alone.
#
#   /usr/sbin/pluginhost                       release build, the git commit embedded
#   /usr/lib/pluginhost/swift/                 the Swift runtime libraries it and the plugins use
#   /usr/lib/pluginhost/plugins/               the bundled plugins (shell, mysql, postgresql)
#   /usr/share/pluginhost/plugins.d/           their manifest templates (postinst writes the manifests)
#   /usr/share/doc/pluginhost/                 README, examples (scripts, config, a C plugin)
#   /lib/systemd/system/pluginhost-recover.*   the recovery timer and service
#   /usr/lib/tmpfiles.d/pluginhost.conf        /run/pluginhost, 0700 root
#   /usr/share/man/man8/pluginhost.8.gz        generated from the commands
#   bash, zsh and fish completions             generated from the commands
#
# The Swift runtime is bundled as shared libraries (RUNPATH /usr/lib/pluginhost/swift), not
# linked statically: the plugins are Swift libraries loaded with dlopen into the host's
# process, and host and plugins must share one runtime (a static copy in each would mean two
# runtimes, with two sets of type metadata and conformance tables, in one process).
# Run as root on Debian 12 (it installs the build packages with apt if missing); the package
# is built for the release it is built on: build it on each distribution release you ship.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
ensure_packages "${BUILD_PACKAGES[@]}" binutils gzip
swift_on_path

SCRATCH=${PACKAGE_SCRATCH:-.build-package}
OUT=${PACKAGE_OUT:-dist}
LIBDIR=/usr/lib/pluginhost
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit=$commit-dirty; fi

echo "== release build (commit $commit)" >&2
# The toolchain's own library directory must not end up in the RUNPATH: the package's does.
export PLUGINHOST_GIT_COMMIT=$commit   # Package.swift defines it for the shim's C file alone
swift build -c release --scratch-path "$SCRATCH" \
    -Xswiftc -no-toolchain-stdlib-rpath -Xlinker -rpath -Xlinker "$LIBDIR/swift" >&2
BUILT=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
TOOLCHAIN_LIBS=$(dirname "$(dirname "$(command -v swift)")")/lib/swift/linux

VERSION=$("$BUILT/pluginhost" --version 2>/dev/null | sed -n 's/^pluginhost \([^ ]*\) .*/\1/p') || true
if [ -z "$VERSION" ]; then
    VERSION=$(LD_LIBRARY_PATH=$TOOLCHAIN_LIBS "$BUILT/pluginhost" --version | sed -n 's/^pluginhost \([^ ]*\) .*/\1/p')
fi
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/pluginhost-package-XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
install -d -m 0755 "$ROOT/DEBIAN" "$ROOT/usr/sbin" "$ROOT$LIBDIR/swift" "$ROOT$LIBDIR/plugins" \
    "$ROOT/usr/share/pluginhost/plugins.d" "$ROOT/usr/share/doc/pluginhost/examples" \
    "$ROOT/lib/systemd/system" "$ROOT/usr/lib/tmpfiles.d" "$ROOT/usr/share/man/man8" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d"

echo "== binary, plugins and the Swift runtime they use" >&2
install -m 0755 "$BUILT/pluginhost" "$ROOT/usr/sbin/pluginhost"
for template in plugins.d/*.json; do
    library=$(sed -n 's/^ *"library": *"\([^"]*\)".*/\1/p' "$template")
    install -m 0755 "$BUILT/$library" "$ROOT$LIBDIR/plugins/$library"
    sed -e "s|\"library\": *\"[^\"]*\"|\"library\": \"$LIBDIR/plugins/$library\"|" \
        -e "s|/usr/local/lib/pluginhost/$library --template plugins.d/|$LIBDIR/plugins/$library --template /usr/share/pluginhost/plugins.d/|" \
        "$template" >"$ROOT/usr/share/pluginhost/plugins.d/$(basename "$template")"
done
strip --strip-unneeded "$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR"/plugins/*.so

# Every library from the toolchain that the binary or a plugin needs, transitively.
toolchain_needs() { LD_LIBRARY_PATH=$TOOLCHAIN_LIBS ldd "$@" | awk -v dir="$TOOLCHAIN_LIBS/" 'index($3, dir) == 1 { print $3 }' | sort -u; }
needed=$(toolchain_needs "$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR"/plugins/*.so)
for library in $needed; do install -m 0644 "$library" "$ROOT$LIBDIR/swift/"; done
more=$(toolchain_needs "$ROOT$LIBDIR"/swift/*.so)
for library in $more; do [ -e "$ROOT$LIBDIR/swift/$(basename "$library")" ] || install -m 0644 "$library" "$ROOT$LIBDIR/swift/"; done
strip --strip-unneeded "$ROOT$LIBDIR"/swift/*.so
# Nothing may still point into the build machine's toolchain.
for file in "$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR"/plugins/*.so "$ROOT$LIBDIR"/swift/*.so; do
    if readelf -d "$file" | grep -E 'R(UN)?PATH' | grep -qF "$TOOLCHAIN_LIBS"; then
        echo "$file has the toolchain in its RUNPATH" >&2; exit 1
    fi
done
missing=$(ldd "$ROOT/usr/sbin/pluginhost" 2>&1 | grep -v "$LIBDIR/swift" | grep 'not found' || true)
[ -z "$(echo "$missing" | grep -v libswift | grep -v libFoundation | grep -v libdispatch | grep -v libBlocks || true)" ] ||
    { echo "unresolved libraries: $missing" >&2; exit 1; }

echo "== units, man page, completions, docs" >&2
install -m 0644 packaging/systemd/pluginhost-recover.service packaging/systemd/pluginhost-recover.timer "$ROOT/lib/systemd/system/"
install -m 0644 packaging/systemd/pluginhost.conf "$ROOT/usr/lib/tmpfiles.d/pluginhost.conf"
run_built() { LD_LIBRARY_PATH=$ROOT$LIBDIR/swift "$ROOT/usr/sbin/pluginhost" "$@"; }
run_built --generate-completion-script bash >"$ROOT/usr/share/bash-completion/completions/pluginhost"
run_built --generate-completion-script zsh >"$ROOT/usr/share/zsh/vendor-completions/_pluginhost"
run_built --generate-completion-script fish >"$ROOT/usr/share/fish/vendor_completions.d/pluginhost.fish"
scripts/lib/manpage.sh "$SCRATCH" "$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR/swift" "$STAGE/man"
gzip -9n <"$STAGE/man/pluginhost.8" >"$ROOT/usr/share/man/man8/pluginhost.8.gz"
install -m 0644 README.md "$ROOT/usr/share/doc/pluginhost/README.md"
gzip -9n "$ROOT/usr/share/doc/pluginhost/README.md"
cp -r examples/. "$ROOT/usr/share/doc/pluginhost/examples/"
install -m 0644 Sources/PluginABI/include/pluginhost_plugin.h "$ROOT/usr/share/doc/pluginhost/examples/plugins/"
chmod -R u=rwX,go=rX "$ROOT/usr/share/doc/pluginhost"
printf 'pluginhost %s (commit %s), built on %s.\nSwift runtime libraries: Swift (Apache License 2.0 with Runtime Library Exception).\n' \
    "$VERSION" "$commit" "$(. /etc/os-release; echo "$PRETTY_NAME")" >"$ROOT/usr/share/doc/pluginhost/copyright"

echo "== control" >&2
# Depends: the Debian package of every system library the packaged files link directly
# (their DT_NEEDED, as dpkg-shlibdeps reads them), libc6 at the newest symbol version they need.
elves=("$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR"/plugins/*.so "$ROOT$LIBDIR"/swift/*.so)
needed_names=$(for elf in "${elves[@]}"; do objdump -p "$elf" | awk '$1 == "NEEDED" { print $2 }'; done | sort -u)
resolved=$(LD_LIBRARY_PATH=$ROOT$LIBDIR/swift ldd "${elves[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u)
system_libraries=$(for name in $needed_names; do
    [ -e "$ROOT$LIBDIR/swift/$name" ] && continue
    echo "$resolved" | awk -v name="$name" '$1 == name { print $2; exit }'
done | sort -u)
packages=$(for library in $system_libraries; do
    dpkg -S "$library" 2>/dev/null || dpkg -S "$(readlink -f "$library")" 2>/dev/null || echo "none: $library"
done | sed 's/:.*//; s/ *$//' | sort -u)
if echo "$packages" | grep -q '^none'; then echo "no package owns: $packages" >&2; exit 1; fi
glibc=$(objdump -T "$ROOT/usr/sbin/pluginhost" "$ROOT$LIBDIR"/plugins/*.so "$ROOT$LIBDIR"/swift/*.so |
    grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
depends=""
for package in $packages; do
    entry=$package
    [ "$package" = libc6 ] && entry="libc6 (>= $glibc)"
    depends=${depends:+$depends, }$entry
done
for required in libc6 libmariadb3 libpq5 libffi8 libssl3; do
    echo "$packages" | grep -qx "$required" || { echo "expected a dependency on $required, found: $packages" >&2; exit 1; }
done
size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
    packaging/debian/control.in >"$ROOT/DEBIAN/control"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$ROOT/DEBIAN/"
(cd "$ROOT" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums" "$ROOT/DEBIAN/control"

mkdir -p "$OUT"
DEB=$OUT/pluginhost_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >&2
echo "== $DEB: $(du -k "$DEB" | cut -f1) KiB, installed $size KiB; Depends: $depends" >&2
echo "$DEB"
