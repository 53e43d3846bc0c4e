# Shared by the start/stop scripts of the throwaway test database servers (sourced, not run).
# Nothing here touches a system service: each server lives in its own directory, listens on
# 127.0.0.1 and a unix socket there, and is started and stopped by these scripts only.

db_log() { echo "$DB_SCRIPT: $*" >&2; }
db_die() { db_log "ERROR: $*"; exit 1; }

db_require_root() { [ "$(id -u)" = 0 ] || db_die "run as root (the server runs as its own system user)"; }

# apt-get install "$@" without letting the packages' maintainer scripts start the system
# services: a policy-rc.d that refuses every start, for the duration of the install only.
db_apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d placed=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# pluginhost test scripts: no service starts during this install\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        placed=1
    fi
    local status=0
    { apt-get install -y -q "$@" || { apt-get update -q && apt-get install -y -q "$@"; }; } >&2 || status=$?
    [ -n "$placed" ] && rm -f "$policy"
    return $status
}

# True when some TCP socket (any state, IPv4 or IPv6) uses local port $1.
db_port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2" "}' | grep -qF "$hex"
}

# A free TCP port in 11000-19999: below the kernel's ephemeral range (32768-60999 by default,
# /proc/sys/net/ipv4/ip_local_port_range), so that no client connection can take it between
# the choice and the server's bind, and not used by any socket now.
db_free_port() {
    local low high port
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    for port in $(shuf -i 11000-19999 -n 300); do
        [ "$port" -ge "$low" ] && [ "$port" -le "$high" ] && continue
        db_port_in_use "$port" || { echo "$port"; return 0; }
    done
    return 1
}

# Value of KEY in the env file $1.
db_env_value() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n 1; }
