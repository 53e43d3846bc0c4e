# Sourced by scripts/*.sh: installs what a script needs with apt, and finds the Swift toolchain.

# The Debian packages every build and test needs (the Swift toolchain itself is not one: see
# swift_on_path). The database servers are installed by scripts/db/start-*.sh.
BUILD_PACKAGES=(
    gcc libc6-dev pkg-config binutils libstdc++-12-dev libgcc-12-dev zlib1g-dev   # what swiftc links with
    libcurl4 libxml2 libedit2 libsqlite3-0 libncurses6 libpython3.11 tzdata git   # what the toolchain runs with
    libffi-dev libpq-dev libmariadb-dev libssl-dev                                # the system-library targets
)
TEST_PACKAGES=(xfsprogs e2fsprogs btrfs-progs util-linux mount procps perl python3 coreutils qemu-guest-agent
    etcd-server etcd-client iproute2 openssl)                                     # consistency groups: etcd, netns, certificates

# apt-get install each package not installed yet (apt-get update first only if needed).
ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing with apt: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }; } >&2
}

# Puts swift on PATH: one already there, else the toolchain in $SWIFT_TOOLCHAIN (default
# /opt/swift, where swift.org's tarball is usually unpacked).
swift_on_path() {
    command -v swift >/dev/null 2>&1 && return 0
    local toolchain=${SWIFT_TOOLCHAIN:-/opt/swift}
    [ -x "$toolchain/usr/bin/swift" ] || {
        echo "no Swift toolchain: unpack Swift 6 from swift.org into $toolchain (or set SWIFT_TOOLCHAIN)" >&2
        return 1
    }
    export PATH=$toolchain/usr/bin:$PATH
}

require_root() {
    [ "$(id -u)" = 0 ] || { echo "run as root: sudo $0 ($1)" >&2; exit 1; }
}
