#!/usr/bin/env bash
# The test topology: one L2 segment (a bridge in its own namespace) joining a
# client, the balancer and N backends, each in its own network namespace.
#
#   scripts/netns.sh up   [PREFIX] [BACKENDS] [QUEUES]   (default: dr 2 1)
#   scripts/netns.sh down [PREFIX]
#
# Environment:
#   PLAIN=1     veths as a user's container set-up has them: queues as the
#               kernel allocates them (one RX queue per CPU, one active) and
#               TX checksum offload on, so locally sent frames carry partial
#               UDP checksums. QUEUES is ignored.
#   CHANNELS=N  after creating the balancer's veth with QUEUES queues, make
#               only N of them active (`ethtool -L`), as on a NIC whose
#               driver allocates more queues than it uses.
#   RPS_CPUS    see below.
#
# Namespaces: PREFIX-sw (bridge), PREFIX-cli, PREFIX-lb, PREFIX-be1..N.
# Every namespace's interface is eth0. Addresses (the same in every
# topology: namespaces keep them apart):
#   client   10.99.0.10/24  fd99::10/64
#   balancer 10.99.0.2/24   fd99::2/64   VIP 10.99.0.53 and fd99::53
#   backend i 10.99.0.(20+i) fd99::(20+i)
# `up` first tears down what a previous run left; `down` is idempotent.
set -euo pipefail

cmd=${1:-}
P=${2:-dr}
N=${3:-2}
# Queues of the balancer's veth pair: the sending side spreads flows over
# its TX queues by hash, and veth delivers each on the same-numbered RX queue.
Q=${4:-1}

case "$P" in
dr*) ;;
*) echo "netns.sh: prefix must start with 'dr' (got '$P')" >&2; exit 2 ;;
esac

nss() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}-(sw|cli|lb|be[0-9]+)$" || true
}

down() {
    for ns in $(nss); do
        # Processes left in the namespace (a crashed test) would keep it busy.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}

# host NAME ADDR4 ADDR6 [EXTRA4 EXTRA6]: a namespace with eth0 on the bridge.
host() {
    local name=$1 a4=$2 a6=$3 q=1
    local ns="$P-$name"
    [ "$name" = lb ] && q=$Q
    ip netns add "$ns"
    if [ -n "${PLAIN:-}" ]; then
        ip link add eth0 netns "$ns" type veth peer name "$name" netns "$P-sw"
    else
        ip link add eth0 netns "$ns" numtxqueues "$q" numrxqueues "$q" type veth \
            peer name "$name" netns "$P-sw" numtxqueues "$q" numrxqueues "$q"
    fi
    if [ "$name" = lb ] && [ -n "${CHANNELS:-}" ]; then
        ip netns exec "$ns" ethtool -L eth0 rx "$CHANNELS" tx "$CHANNELS"
        ip netns exec "$P-sw" ethtool -L "$name" rx "$CHANNELS" tx "$CHANNELS"
    fi
    ip -n "$P-sw" link set "$name" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$a4/24" dev eth0
    ip -n "$ns" addr add "$a6/64" dev eth0 nodad
    shift 3
    while [ $# -gt 0 ]; do
        ip -n "$ns" addr add "$1" dev eth0 nodad 2>/dev/null || ip -n "$ns" addr add "$1" dev eth0
        shift
    done
    # Frames from the kernel over veth carry partial checksums (offload).
    # The engine completes them (PLAIN topologies test that); the tuned
    # topology turns offload off, as on a wire, so benchmarks measure the
    # balancer and not the completion.
    if [ -z "${PLAIN:-}" ]; then
        ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true
    fi
    ip -n "$ns" link set eth0 up
    # RPS_CPUS (hex mask, benchmarks): process frames entering the switch on
    # these CPUs. On veth the sender's CPU otherwise carries the whole path
    # (bridge, the receiver's stack) inside its own system call, which would
    # bill the balancer for the simulated network.
    if [ -n "${RPS_CPUS:-}" ]; then
        ip netns exec "$P-sw" sh -c "echo $RPS_CPUS > /sys/class/net/$name/queues/rx-0/rps_cpus"
    fi
}

up() {
    down
    ip netns add "$P-sw"
    ip -n "$P-sw" link add br0 type bridge
    ip -n "$P-sw" link set br0 up
    # A plain switch: no iptables on bridged frames (br_netfilter, when
    # loaded, would run them, in the sender's context).
    for t in iptables ip6tables arptables; do
        ip netns exec "$P-sw" sysctl -qw "net.bridge.bridge-nf-call-$t=0" 2>/dev/null || true
    done
    host cli 10.99.0.10 fd99::10
    host lb 10.99.0.2 fd99::2 10.99.0.53/24 fd99::53/64
    for i in $(seq 1 "$N"); do
        host "be$i" "10.99.0.$((20 + i))" "fd99::$((20 + i))"
    done
}

case "$cmd" in
up) up ;;
down) down ;;
*) echo "usage: netns.sh up|down [PREFIX] [BACKENDS] [QUEUES]" >&2; exit 2 ;;
esac
