#!/usr/bin/env bash
# A fleet of two balancers behind one router, with real daemons: each
# balancer runs `dnsrailctl serve` (and its engine, AF_XDP) and its own BIRD,
# which announces the VIP over BGP (with BFD) to the router's BIRD; the
# router merges both paths into one ECMP route (L4 hash). Then, under a
# bounded load from the client through the router:
#   1. drain balancer 1 (`dnsrailctl node drain`), stop its engine once
#      drained, let ctl start it again: no query may be lost;
#   2. undrain it: both balancers carry load again;
#   3. kill balancer 1's engine and its BIRD (SIGKILL): the route must be
#      withdrawn within 1 s and the loss bounded by what the router still
#      sent to balancer 1 until then.
# Prints `fleet: drain lost D of N, kill lost K of M, withdrawn after X ms`
# and exits non-zero when a bound is broken. Needs root.
#
#   client 10.98.1.10 ── router 10.98.1.1 | 10.98.2.1 ── switch ── lb1 10.98.2.11
#                                                          ├──── lb2 10.98.2.12
#                                                          ├──── be1 10.98.2.21
#                                                          └──── be2 10.98.2.22
#   VIP 10.98.53.53/32 on both balancers (lo), announced by each one's BIRD.
#
# Environment: FLEET_RATE (qps, default 4000), FLEET_SECONDS (per load
# phase, default 6), FLEET_PREFIX (namespaces, default drf), FLEET_PLAIN=1
# (veths as a container set-up has them: the kernel's queues, one per CPU
# with one active, and TX checksum offload on), FLEET_NO_BUILD=1
# (use the binaries in target/release as they are), FLEET_KEEP=1 (leave the
# topology up on exit, to look around; `FLEET_DOWN=1 scripts/fleet-demo.sh`
# tears it down).
set -euo pipefail
cd "$(dirname "$0")/.."

P=${FLEET_PREFIX:-drf}
case "$P" in dr*) ;; *) echo "fleet-demo: FLEET_PREFIX must start with dr" >&2; exit 2 ;; esac
NSS=(sw cli rt lb1 lb2 be1 be2)
BIN=$PWD/target/release
VIP=10.98.53.53

down() {
    for n in "${NSS[@]}"; do
        local ns="$P-$n"
        ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
if [ -n "${FLEET_DOWN:-}" ]; then down; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
    echo "fleet-demo: needs root (network namespaces, XDP, BIRD)" >&2
    exit 2
fi

scripts/setup.sh
if [ -z "${FLEET_NO_BUILD:-}" ]; then
    echo "== building (release)"
    cargo build --release -q -p dnsrail-engine -p dnsrail-bench -p dnsrail-ctl
fi
RATE=${FLEET_RATE:-4000}
SECS=${FLEET_SECONDS:-6}
WORK=$(mktemp -d /tmp/dnsrail-fleet.XXXXXX)
cleanup() {
    local rc=$?
    if [ -n "${FLEET_KEEP:-}" ]; then
        echo "fleet-demo: left up (namespaces $P-*, files in $WORK); FLEET_DOWN=1 $0 tears down"
        exit $rc
    fi
    if [ $rc -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -s "$f" ] || continue
            echo "---- $(basename "$f") (last lines)"
            tail -n 15 "$f"
        done
    fi
    down
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

# ---- topology -------------------------------------------------------------
down
ip netns add "$P-sw"
ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up
for t in iptables ip6tables arptables; do
    in_ns sw sysctl -qw "net.bridge.bridge-nf-call-$t=0" 2>/dev/null || true
done
# on_switch NAME ADDR: namespace NAME with eth0 on the switch.
on_switch() {
    local n=$1 a=$2
    ip netns add "$P-$n" 2>/dev/null || true
    if [ -n "${FLEET_PLAIN:-}" ]; then
        # As a container set-up has them: the kernel's queue count (one
        # per CPU, one active) and TX checksum offload on.
        ip link add eth0 netns "$P-$n" type veth peer name "$n" netns "$P-sw"
    else
        ip link add eth0 netns "$P-$n" numtxqueues 1 numrxqueues 1 type veth \
            peer name "$n" netns "$P-sw" numtxqueues 1 numrxqueues 1
        in_ns "$n" ethtool -K eth0 tx off >/dev/null 2>&1 || true
    fi
    ip -n "$P-sw" link set "$n" master br0 up
    ip -n "$P-$n" link set lo up
    ip -n "$P-$n" addr add "$a/24" dev eth0
    ip -n "$P-$n" link set eth0 up
}
on_switch rt 10.98.2.1
on_switch lb1 10.98.2.11
on_switch lb2 10.98.2.12
on_switch be1 10.98.2.21
on_switch be2 10.98.2.22
ip netns add "$P-cli"
ip link add eth0 netns "$P-cli" type veth peer name eth1 netns "$P-rt"
ip -n "$P-cli" link set lo up
ip -n "$P-cli" addr add 10.98.1.10/24 dev eth0
ip -n "$P-rt" addr add 10.98.1.1/24 dev eth1
if [ -z "${FLEET_PLAIN:-}" ]; then
    in_ns cli ethtool -K eth0 tx off >/dev/null 2>&1 || true
    in_ns rt ethtool -K eth1 tx off >/dev/null 2>&1 || true
fi
ip -n "$P-cli" link set eth0 up
ip -n "$P-rt" link set eth1 up
ip -n "$P-cli" route add default via 10.98.1.1
in_ns rt sysctl -qw net.ipv4.ip_forward=1
# ECMP by the L4 hash (addresses and ports): each client flow stays on one
# balancer, flows spread over both.
in_ns rt sysctl -qw net.ipv4.fib_multipath_hash_policy=1
for n in lb1 lb2; do
    ip -n "$P-$n" addr add "$VIP/32" dev lo
    ip -n "$P-$n" route add default via 10.98.2.1
done

# ---- BIRD -------------------------------------------------------------------
# BFD: 100 ms packets, down after 5 missed (500 ms), lenient enough for two
# shared CPUs that also run two engines and the load. Fast BGP retries: a
# session that did drop comes back in seconds, not BIRD's default minutes.
BFD='protocol bfd {
    interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; };
}'
BGP_TIMERS='connect delay time 1; connect retry time 2; error wait time 1, 10;'
LOG='{ info, remote, warning, error, auth, fatal, bug }'
mkdir -p "$WORK/rt"
cat >"$WORK/rt/bird.conf" <<EOF
router id 10.98.2.1;
log "$WORK/rt-bird.log" $LOG;
protocol device { scan time 1; }
# Every best path of equal merit into the kernel: one route, two next hops.
protocol kernel {
    ipv4 { export all; };
    merge paths on;
}
$BFD
template bgp balancer {
    local 10.98.2.1 as 65000;
    bfd on;
    $BGP_TIMERS
    ipv4 { import all; export none; };
}
protocol bgp lb1 from balancer { neighbor 10.98.2.11 as 65053; }
protocol bgp lb2 from balancer { neighbor 10.98.2.12 as 65053; }
EOF
start_bird() { # NAME
    local n=$1
    in_ns "$n" bird -c "$WORK/$n/bird.conf" -s "$WORK/$n/bird.ctl" -P "$WORK/$n/bird.pid" \
        2>>"$WORK/$n-bird.log"
}
for i in 1 2; do
    n=lb$i
    mkdir -p "$WORK/$n"
    # The file ctl writes; BIRD needs it to exist when it starts (empty:
    # nothing announced until ctl says so).
    : >"$WORK/$n/bird-vips.conf"
    cat >"$WORK/$n/bird.conf" <<EOF
router id 10.98.2.1$i;
log "$WORK/$n-bird.log" $LOG;
protocol device { scan time 1; }
# dnsrailctl's VIP routes (static protocols dnsrail4 and dnsrail6).
include "$WORK/$n/bird-vips.conf";
$BFD
protocol bgp upstream {
    local 10.98.2.1$i as 65053;
    neighbor 10.98.2.1 as 65000;
    bfd on;
    $BGP_TIMERS
    ipv4 { import none; export where proto = "dnsrail4"; };
}
EOF
    cat >"$WORK/$n/dnsrail.toml" <<EOF
[engine]
io = "xdp"
interface = "eth0"

[[frontend]]
listen = "$VIP:53"

[[backend]]
name = "be1"
address = "10.98.2.21:53"

[[backend]]
name = "be2"
address = "10.98.2.22:53"

[health]
interval_ms = 500
timeout_ms = 400
rise = 2
fall = 2

[ctl]
api_listen = "127.0.0.1:8053"
control_socket = "$WORK/$n/engine.sock"
engine_binary = "$BIN/dnsrail"
token = "fleet-demo"

[announce]
bird_socket = "$WORK/$n/bird.ctl"
include_file = "$WORK/$n/bird-vips.conf"
interval_ms = 100
rise = 3
drain_quiet_ms = 1000
EOF
done
start_bird rt

# ---- daemons ------------------------------------------------------------------
for i in 1 2; do
    in_ns "be$i" "$BIN/dnsrail-bench" backend --listen 0.0.0.0:53 --threads 1 --duration 600 \
        >>"$WORK/be$i.log" 2>&1 &
done
export DNSRAIL_TOKEN=fleet-demo
ctl() { # NODE ARGS…: dnsrailctl on balancer NODE
    local n=$1; shift
    in_ns "$n" "$BIN/dnsrailctl" "$@" -c "$WORK/$n/dnsrail.toml"
}
for n in lb1 lb2; do
    start_bird $n
    in_ns $n "$BIN/dnsrailctl" serve -c "$WORK/$n/dnsrail.toml" >>"$WORK/$n-ctl.log" 2>&1 &
done

route() { ip -n "$P-rt" route show "$VIP/32"; }
hops() { route | grep -c "nexthop via" || true; }
# wait_hops N SECONDS: until the router's route has N next hops (N=1: a
# single `via`, no multipath).
wait_hops() {
    local want=$1 end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        if [ "$want" -ge 2 ] && [ "$(hops)" -eq "$want" ]; then return 0; fi
        if [ "$want" -eq 1 ] && [ "$(hops)" -eq 0 ] && route | grep -q via; then return 0; fi
        sleep 0.05
    done
    echo "fleet-demo: the router's route to $VIP did not reach $want next hop(s):" >&2
    route >&2
    return 1
}
echo "== waiting for both balancers to announce $VIP"
wait_hops 2 60
echo "== the router's route (ECMP, two next hops)"
route | sed 's/^/   /'
in_ns cli dig @$VIP +notcp +tries=1 +time=2 www.example.com A | grep -E "status:" | sed 's/^/   /'
in_ns cli dig @$VIP +tcp +tries=1 +time=2 www.example.com A | grep -E "status:" | sed 's/^/   /'

frontend_queries() { # NODE: queries the node's frontend received
    ctl "$1" stats --json | python3 -c 'import json,sys; print(sum(f["queries"] for f in json.load(sys.stdin)["frontends"]))'
}
# load QUERIES OUT: a bounded load through the router; many source ports,
# so that the L4 hash spreads the flows over both balancers.
load() {
    in_ns cli "$BIN/dnsrail-bench" load --target "$VIP:53" --queries "$1" --rate "$RATE" \
        --sockets 64 --max-duration $((SECS * 4 + 20)) --json >"$2"
}
# Lost: never answered, or answered SERVFAIL (a failure to the client too).
lost_of() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["sent"]-r["answered"]+r["servfail"], r["sent"])' "$1"; }

N=$((RATE * SECS))
# TCP/53 connections held across a drain and an undrain: when the router's
# next hops change, a connection whose flow now hashes to the other balancer
# reaches a host that does not know it. Measured, not bounded.
cat >"$WORK/tcp_hold.py" <<'PY'
import os, socket, struct, sys, time
vip, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x03www\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
def ask(s):
    s.sendall(struct.pack(">H", len(q)) + q)
    h = s.recv(2)
    if len(h) < 2:
        raise OSError("closed")
    ln = struct.unpack(">H", h)[0]
    got = b""
    while len(got) < ln:
        c = s.recv(ln - len(got))
        if not c:
            raise OSError("closed")
        got += c
conns = []
for i in range(n):
    s = socket.create_connection((vip, 53), timeout=2)
    ask(s)
    conns.append(s)
print("open", len(conns), flush=True)
end = time.time() + 30
while not os.path.exists(go) and time.time() < end:
    time.sleep(0.05)
# Each connection: answered (survived), closed cleanly by the balancer
# (FIN: the client reconnects), or reset / broken (a query lost to the
# client until it notices).
def eof(s):
    # Closed by the balancer already (FIN waiting): a client sees it before
    # it sends, and reconnects.
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return False
    finally:
        s.setblocking(True)
        s.settimeout(2)
ok = closed = reset = 0
for s in conns:
    if eof(s):
        closed += 1
        continue
    try:
        ask(s)
        ok += 1
    except (ConnectionResetError, BrokenPipeError, socket.timeout, TimeoutError):
        reset += 1
    except OSError:
        closed += 1
print("survived", ok, "of", n, "closed", closed, "reset", reset, flush=True)
PY
# tcp_hold TAG: 64 connections, one query each, a second query on each
# once $WORK/TAG.go exists.
tcp_hold() {
    in_ns cli python3 "$WORK/tcp_hold.py" $VIP 64 "$WORK/$1.go" >"$WORK/$1.out" 2>&1 &
    TCP=$!
    for _ in $(seq 100); do grep -q "^open" "$WORK/$1.out" 2>/dev/null && break; sleep 0.05; done
}
tcp_result() { # TAG: sets TCP_SURVIVED (not in a subshell: it waits for
    # this shell's child)
    touch "$WORK/$1.go"
    wait "$TCP" || true
    local l
    l=$(grep "^survived" "$WORK/$1.out" || echo "survived ? of 64 closed ? reset ?")
    set -- $l
    TCP_SURVIVED="$2 of $4 survived, $6 closed cleanly, $8 reset"
}

# ---- 1. drain under load ---------------------------------------------------------
echo "== 1. drain lb1 under load ($N queries at $RATE qps)"
tcp_hold drain
load "$N" "$WORK/drain.json" &
LOAD=$!
sleep 1.5
ctl lb1 node drain --timeout 20 | sed 's/^/   /'
wait_hops 1 5
route | sed 's/^/   router: /'
tcp_result drain
TCP_DRAIN=$TCP_SURVIVED
echo "   TCP/53 connections held across the drain: $TCP_DRAIN"
# Drained: nothing arrives and nothing is in flight, so stopping the engine
# now loses nothing. ctl starts it again (it supervises it).
pkill -TERM -f "$BIN/dnsrail -c $WORK/lb1/dnsrail.toml" || true
echo "   lb1's engine stopped after the drain; ctl starts it again"
wait "$LOAD"
read -r D N1 < <(lost_of "$WORK/drain.json")
echo "   lost $D of $N1"

# ---- 2. undrain --------------------------------------------------------------------
tcp_hold undrain
echo "== 2. undrain lb1: both balancers carry load again"
ctl lb1 node undrain | sed 's/^/   /'
wait_hops 2 30
route | sed 's/^/   router: /'
tcp_result undrain
TCP_UNDRAIN=$TCP_SURVIVED
echo "   TCP/53 connections held across the undrain: $TCP_UNDRAIN"
ctl lb1 node status | sed 's/^/   lb1 /'
b1=$(frontend_queries lb1); b2=$(frontend_queries lb2)
load $((RATE * 2)) "$WORK/undrain.json"
c1=$(frontend_queries lb1); c2=$(frontend_queries lb2)
echo "   lb1 received $((c1 - b1)), lb2 received $((c2 - b2)) of $((RATE * 2)) queries"
if [ $((c1 - b1)) -eq 0 ] || [ $((c2 - b2)) -eq 0 ]; then
    echo "fleet-demo: after the undrain one balancer received nothing" >&2
    exit 1
fi

# ---- 3. kill under load ---------------------------------------------------------------
echo "== 3. kill lb1's engine and its BIRD under load ($N queries at $RATE qps)"
load "$N" "$WORK/kill.json" &
LOAD=$!
sleep 1.5
t0=$(date +%s%N)
pkill -KILL -f "$BIN/dnsrail -c $WORK/lb1/dnsrail.toml" || true
kill -KILL "$(cat "$WORK/lb1/bird.pid")"
while [ "$(hops)" -ge 2 ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ]; do sleep 0.005; done
X=$(( ($(date +%s%N) - t0) / 1000000 ))
route | sed 's/^/   router: /'
wait "$LOAD"
read -r K M < <(lost_of "$WORK/kill.json")
# What the router sent lb1 until the withdrawal (about half the load, over
# X ms), plus 10 ms for queries on the wire, is the most that may be lost.
BOUND=$(( RATE * (X + 10) / 1000 ))
echo "   withdrawn after $X ms; lost $K of $M (bound: $RATE qps x $((X + 10)) ms = $BOUND)"

echo "   (TCP/53 across the drain: $TCP_DRAIN; across the undrain: $TCP_UNDRAIN)"
echo "fleet: drain lost $D of $N1, kill lost $K of $M, withdrawn after $X ms"
fail=0
[ "$D" -eq 0 ] || { echo "fleet-demo: the drain lost $D queries (must be 0)" >&2; fail=1; }
[ "$X" -le 1000 ] || { echo "fleet-demo: the route was withdrawn after $X ms (bound 1000)" >&2; fail=1; }
[ "$K" -le "$BOUND" ] || { echo "fleet-demo: the kill lost $K queries (bound $BOUND)" >&2; fail=1; }
exit $fail
