#!/usr/bin/env bash
# Throughput and CPU of the two data planes, in one run on the namespace
# topology (scripts/netns.sh): kxdpgun (open loop, rate sweep) from the
# client namespace against
#   direct   one synthetic backend (10.99.0.21:53)
#   xdp      dnsrail, AF_XDP data plane, VIP 10.99.0.53:53, two backends
#   socket   dnsrail, socket data plane, 10.99.0.2:5300, same two backends
# For each: the highest offered rate with >= 99 % answered, dnsperf's
# closed-loop rate and latency; for the two
# balancers, engine CPU microseconds per query at a fixed 50 k qps
# (adaptive polling). Prints a markdown table. Needs root. Bounded: every
# step has a fixed duration; namespaces are removed on exit.
#
#   scripts/bench-xdp.sh            full sweep (~3 min)
#   RATES="50000 100000" SECS=2 scripts/bench-xdp.sh   custom sweep
#   BACKEND=socket scripts/bench-xdp.sh   kernel-socket backends
set -euo pipefail
cd "$(dirname "$0")/.."

P=drb
RATES=${RATES:-"25000 50000 100000 150000 200000 250000 300000 400000"}
SECS=${SECS:-3}
CPU_RATE=${CPU_RATE:-50000}
CPU_SECS=${CPU_SECS:-5}
# xdp: the XDP responder (answers in the driver: never the limit);
# socket: the synthetic backend on kernel sockets (BACKEND_THREADS threads).
BACKEND=${BACKEND:-xdp}
BACKEND_THREADS=${BACKEND_THREADS:-2}

[ "$(id -u)" -eq 0 ] || { echo "bench-xdp.sh: needs root (namespaces, XDP)" >&2; exit 1; }
bash scripts/setup.sh >/dev/null
cargo build --release -q -p dnsrail-engine -p dnsrail-bench
BIN=target/release
WORK=$(mktemp -d /tmp/dnsrail-bench.XXXXXX)
ENGINE_PID=""

cleanup() {
    [ -n "$ENGINE_PID" ] && kill "$ENGINE_PID" 2>/dev/null || true
    scripts/netns.sh down "$P" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The switch's work goes to CPU 0 with the load generator; the balancer
# gets CPU 1 (cpus = [1] below) for itself.
RPS_CPUS=${RPS_CPUS:-1} scripts/netns.sh up "$P" 2
for i in 1 2; do
    if [ "$BACKEND" = xdp ]; then
        ip netns exec "$P-be$i" "$BIN/dnsrail-bench" xdp-backend --interface eth0 \
            --duration 1200 >/dev/null 2>&1 &
    else
        ip netns exec "$P-be$i" "$BIN/dnsrail-bench" backend --listen "[::]:53" \
            --threads "$BACKEND_THREADS" --duration 1200 >/dev/null 2>&1 &
    fi
done
sleep 1

# 10 000 names, one in seven under the NXDOMAIN suffix.
awk 'BEGIN { for (i = 0; i < 10000; i++) printf (i % 7 == 3 ? "q%d.nx.example A\n" : "q%d.load.example A\n"), i }' >"$WORK/queries.txt"

cat >"$WORK/xdp.toml" <<TOML
[engine]
io = "xdp"
interface = "eth0"
cpus = [1]
stats_interval_s = 0
[[frontend]]
listen = "10.99.0.53:53"
[[backend]]
name = "be1"
address = "10.99.0.21"
[[backend]]
name = "be2"
address = "10.99.0.22"
TOML
sed -e 's/io = "xdp"/io = "socket"/' -e 's/10.99.0.53:53/10.99.0.2:5300/' "$WORK/xdp.toml" >"$WORK/socket.toml"

# gun RATE IP PORT SECS -> "sent_pps answered_pps pct"
gun() {
    ip netns exec "$P-cli" timeout $(($4 + 20)) kxdpgun -F 0 -t "$4" -Q "$1" -p "$3" \
        -i "$WORK/queries.txt" "$2" 2>&1 | awk '
        /^total queries:/ { gsub(/\(/, "", $4); sent = $4 }
        /^total replies:/ { gsub(/\(/, "", $4); got = $4; gsub(/[()%]/, "", $6); pct = $6 }
        END { printf "%s %s %s\n", sent + 0, got + 0, pct + 0 }'
    # kxdpgun leaves its XDP program on the client's interface.
    ip -n "$P-cli" link set dev eth0 xdp off 2>/dev/null || true
}

start_engine() {
    ip netns exec "$P-lb" "$BIN/dnsrail" -c "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    ENGINE_PID=$!
    for _ in $(seq 50); do
        grep -q "engine started" "$WORK/$1.log" && return 0
        sleep 0.1
    done
    cat "$WORK/$1.log" >&2
    return 1
}

stop_engine() {
    kill "$ENGINE_PID"
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_PID=""
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }

# sweep NAME IP PORT -> "BEST LIMIT": the highest answered rate of a step
# with >= 99 % answered, and what stopped the sweep: "path" when a step lost
# more than 1 %, "client" when the generator could not send what was asked
# (sent < 95 % of offered; CPU 0 runs both the generator and the switch).
sweep() {
    local best=0 limit=client
    for r in $RATES; do
        read -r sent got pct < <(gun "$r" "$2" "$3" "$SECS")
        echo "  $1 offered $r: sent $sent/s answered $got/s ($pct %)" >&2
        if ! awk -v p="$pct" 'BEGIN { exit !(p >= 99) }'; then limit=path; break; fi
        [ "$got" -gt "$best" ] && best=$got
        if awk -v s="$sent" -v r="$r" 'BEGIN { exit !(s >= 0.95 * r) }'; then limit=none; else limit=client; fi
    done
    echo "$best $limit"
}

# perf IP PORT -> "qps avg_latency_us completed_pct": dnsperf, closed loop
# (4 clients, up to 500 queries outstanding), SECS seconds.
perf() {
    ip netns exec "$P-cli" timeout $((SECS + 20)) dnsperf -s "$1" -p "$2" -d "$WORK/queries.txt" \
        -l "$SECS" -c 4 -T 1 -q 500 2>&1 | awk '
        /Queries completed:/ { gsub(/[()%]/, "", $4); pct = $4 }
        /Queries per second:/ { qps = $4 }
        /Average Latency/ { lat = $4 * 1e6 }
        END { printf "%.0f %.0f %s\n", qps, lat, pct }'
}

# cpu NAME IP PORT -> µs of engine CPU per answered query at CPU_RATE
cpu() {
    local hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$ENGINE_PID"); u0=$(user_ticks "$ENGINE_PID")
    read -r sent got pct < <(gun "$CPU_RATE" "$2" "$3" "$CPU_SECS")
    t1=$(cpu_ticks "$ENGINE_PID"); u1=$(user_ticks "$ENGINE_PID")
    awk -v d=$((t1 - t0)) -v u=$((u1 - u0)) -v hz="$hz" -v n=$((got * CPU_SECS)) -v p="$pct" -v s="$CPU_SECS" \
        'BEGIN { n = (n > 0 ? n : 1); printf "%.2f (user %.2f; %.1f %% of one core; %s %% answered)\n", d / hz * 1e6 / n, u / hz * 1e6 / n, d / hz * 100 / s, p }'
}

echo "sweep: rates $RATES, $SECS s each; CPU at $CPU_RATE qps for $CPU_SECS s; $BACKEND backends" >&2
read -r direct direct_lim < <(sweep direct 10.99.0.21 53)
read -r direct_pq direct_pl direct_pp < <(perf 10.99.0.21 53)

start_engine xdp
read -r xdp xdp_lim < <(sweep xdp 10.99.0.53 53)
read -r xdp_pq xdp_pl xdp_pp < <(perf 10.99.0.53 53)
xdp_cpu=$(cpu xdp 10.99.0.53 53)
idle0=$(cpu_ticks "$ENGINE_PID"); sleep 5; idle1=$(cpu_ticks "$ENGINE_PID")
stop_engine

start_engine socket
read -r sock sock_lim < <(sweep socket 10.99.0.2 5300)
read -r sock_pq sock_pl sock_pp < <(perf 10.99.0.2 5300)
sock_cpu=$(cpu socket 10.99.0.2 5300)
stop_engine

ratio=$(awk -v a="$xdp" -v b="$sock" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
cpu_ratio=$(awk -v a="${xdp_cpu%% *}" -v b="${sock_cpu%% *}" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
cat <<TABLE

| path | kxdpgun: max qps, >= 99 % answered | limited by | dnsperf: qps (avg latency, completed) | engine CPU us/query at $CPU_RATE qps |
|---|---|---|---|---|
| direct to one backend | $direct | $direct_lim | $direct_pq (${direct_pl} us, $direct_pp %) | - |
| dnsrail AF_XDP (2 backends) | $xdp | $xdp_lim | $xdp_pq (${xdp_pl} us, $xdp_pp %) | $xdp_cpu |
| dnsrail sockets (2 backends) | $sock | $sock_lim | $sock_pq (${sock_pl} us, $sock_pp %) | $sock_cpu |

AF_XDP / sockets max-rate ratio: $ratio (target >= 2); CPU-per-query ratio (sockets / AF_XDP): $cpu_ratio.
"limited by": path = a step lost more than 1 % (balancer or backend saturated);
client = the generator could not send the offered rate (CPU 0 carries both the
generator and the switch); none = the sweep ended with every step answered.
Idle AF_XDP engine: $(( (idle1 - idle0) * 1000 / $(getconf CLK_TCK) )) ms CPU over 5 s.
TABLE
