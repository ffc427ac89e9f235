#!/usr/bin/env bash
# Installs the system tools the network-namespace test harness (tests/src/netns) needs, on
# Debian or Ubuntu, if any are missing:
#
#   ip        (iproute2)      namespaces, veth pairs, bridges, addresses, routes
#   iptables  (iptables)      MASQUERADE inside the lab's NAT-router namespaces; Debian's default
#                             is the nf_tables backend, the harness also works with iptables-legacy
#   ping      (iputils-ping)  reachability checks inside the lab
#   cc        (gcc, libc6-dev) compiling the bundled SQLite of weft-controller's SqliteStore
#   miniupnpd (miniupnpd-nftables) a real UPnP IGD / NAT-PMP / PCP gateway for the port-mapping
#                             tests (only the daemon binary: no init script, nothing started);
#                             Debian's nftables build, which keeps its rules in its own nft table
#   nft       (nftables)      creating miniupnpd's table and chains, reading its rules
#   initdb, pg_ctl, postgres (postgresql)  a private PostgreSQL cluster for the PostgresStore
#             tests and bench (weft_controller::store::postgres::test_server starts one per test
#             as the `postgres` user; set WEFT_TEST_POSTGRES_URL to use an existing server)
#
# Idempotent and silent when everything is present. Must run as root to install anything. Runs
# `apt-get update` only if the first install attempt fails (stale or empty package lists).
# The netns tests themselves also need root and a kernel with network namespaces, veth, bridge
# and netfilter NAT; set WEFT_SKIP_NETNS=1 to skip them explicitly where that is not available.
set -euo pipefail

have() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

missing=()
have ip || missing+=(iproute2)
have iptables || missing+=(iptables)
have ping || missing+=(iputils-ping)
have cc || missing+=(gcc libc6-dev)
have miniupnpd || missing+=(miniupnpd-nftables)
have nft || missing+=(nftables)
have_postgres() {
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [[ -x $f ]] && return 0
    done
    return 1
}
if [[ -z ${WEFT_TEST_POSTGRES_URL:-} ]] && ! have_postgres; then
    missing+=(postgresql)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-deps: missing ${missing[*]}; run this script as root to install them" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
if ! install 2>/dev/null; then
    apt-get update -qq
    install
fi
