#!/usr/bin/env bash
# The main job, end to end: two synthetic backends (one with a recursor-like
# mix of fast and slow answers), dnsrail in front of them, a few dig queries,
# a bounded load, a reload under load, a summary.
#
# As root: the AF_XDP data plane on a namespace topology (scripts/netns.sh:
# client, balancer with VIP 10.99.0.53 / fd99::53, backends). Otherwise, or
# with DEMO_MODE=socket: the socket data plane on loopback.
# Everything it starts is stopped when it exits, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building (release)"
cargo build --release -q -p dnsrail-engine -p dnsrail-bench -p dnsrail-ctl
BIN=target/release
WORK=$(mktemp -d /tmp/dnsrail-demo.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    cleanup_ns
}
cleanup_ns() { :; }
trap cleanup EXIT

QUERIES=${DEMO_QUERIES:-200000}
RATE=${DEMO_RATE:-40000}
MODE=${DEMO_MODE:-auto}
if [ "$MODE" = auto ]; then
    if [ "$(id -u)" -eq 0 ]; then MODE=xdp; else MODE=socket; fi
fi

if [ "$MODE" = xdp ]; then
    NS=drdemo
    scripts/netns.sh up $NS 3
    cleanup_ns() { scripts/netns.sh down $NS; }
    IN_CLI="ip netns exec $NS-cli"
    IN_LB="ip netns exec $NS-lb"
    in_be() { echo "ip netns exec $NS-be$1"; }
    VIP_IP=10.99.0.53
    VIP_PORT=53
    B1=10.99.0.21:53; B2=10.99.0.22:53; B3=10.99.0.23:53
    LISTEN=("[::]:53" "[::]:53" "[::]:53")
    ENGINE_CONF='io = "xdp"
interface = "eth0"'
    EXTRA='[[frontend]]
listen = "[fd99::53]:53"
pool = "v6"
[pool.v6]
[[backend]]
name = "fast-v6"
address = "[fd99::21]:53"
pools = ["v6"]'
else
    cleanup_ns() { :; }
    IN_CLI=""
    IN_LB=""
    in_be() { :; }
    VIP_IP=127.0.0.1
    VIP_PORT=15353
    B1=127.0.0.1:15301; B2=127.0.0.1:15302; B3=127.0.0.1:15303
    LISTEN=("$B1" "$B2" "$B3")
    ENGINE_CONF='io = "socket"
workers = 2'
    EXTRA=""
fi
VIP=$VIP_IP:$VIP_PORT
echo "== mode: $MODE (VIP $VIP)"

$(in_be 1) "$BIN/dnsrail-bench" backend --listen "${LISTEN[0]}" --threads 1 --duration 120 >"$WORK/b1.log" &
PIDS+=($!)
$(in_be 2) "$BIN/dnsrail-bench" backend --listen "${LISTEN[1]}" --threads 1 --delay-ms 20 --delay-fraction 0.2 --duration 120 >"$WORK/b2.log" &
PIDS+=($!)
$(in_be 3) "$BIN/dnsrail-bench" backend --listen "${LISTEN[2]}" --threads 1 --duration 120 >"$WORK/b3.log" &
PIDS+=($!)

write_config() {
    cat >"$WORK/dnsrail.toml" <<TOML
[engine]
$ENGINE_CONF
stats_interval_s = 2

[[frontend]]
listen = "$VIP"

[[backend]]
name = "fast"
address = "$B1"

[[backend]]
name = "$1"
address = "$2"

$EXTRA
TOML
}
write_config mixed $B2
"$BIN/dnsrailctl" check -c "$WORK/dnsrail.toml"
$IN_LB "$BIN/dnsrail" -c "$WORK/dnsrail.toml" 2>"$WORK/engine.log" &
ENGINE=$!
PIDS+=($ENGINE)
for _ in $(seq 50); do
    $IN_CLI dig @$VIP_IP -p $VIP_PORT +notcp +tries=1 +time=1 ready.example >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== dig through the VIP ($VIP)"
$IN_CLI dig @$VIP_IP -p $VIP_PORT +notcp +tries=1 +time=2 www.example.com A | grep -E "status:|^www"
$IN_CLI dig @$VIP_IP -p $VIP_PORT +notcp +tries=1 +time=2 missing.nx.example A | grep -E "status:"
if [ "$MODE" = xdp ]; then
    $IN_CLI dig @fd99::53 +notcp +tries=1 +time=2 www.example.com AAAA | grep -E "status:|^www"
    echo "== the kernel path beside the XDP program: ping the VIP"
    $IN_CLI ping -c 1 -W 2 $VIP_IP | grep -E "received"
fi

echo "== bounded load: $QUERIES queries at $RATE qps"
$IN_CLI "$BIN/dnsrail-bench" load --target $VIP --queries "$QUERIES" --rate "$RATE" --max-duration 60 | tee "$WORK/load1.txt"

echo "== reload (SIGHUP): backend 'mixed' replaced by 'spare', under load"
$IN_CLI "$BIN/dnsrail-bench" load --target $VIP --queries $((RATE * 3)) --rate "$RATE" --max-duration 60 >"$WORK/load2.txt" &
LOAD=$!
sleep 1
write_config spare $B3
kill -HUP $ENGINE
wait $LOAD
cat "$WORK/load2.txt"
sleep 2.2

echo "== engine log"
grep -E "engine started|io = auto|reloaded|qps in|refused" "$WORK/engine.log" | sed 's/^[^ ]* *//' | tail -n 8
kill -TERM $ENGINE
wait $ENGINE 2>/dev/null || true
grep "final " "$WORK/engine.log" | sed 's/^[^ ]* *//'
echo "== backends"
kill -INT "${PIDS[@]:0:3}" 2>/dev/null || true
sleep 0.3
cat "$WORK"/b?.log | grep queries || true
lost1=$(grep -oE 'lost [0-9]+' "$WORK/load1.txt" | awk '{print $2}')
lost2=$(grep -oE 'lost [0-9]+' "$WORK/load2.txt" | awk '{print $2}')
echo "== summary: lost $lost1 of $QUERIES in the steady run, $lost2 of $((RATE * 3)) across the reload"
