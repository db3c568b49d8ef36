#!/usr/bin/env bash
# The main job, end to end on loopback: two synthetic backends (one with a
# recursor-like mix of fast and slow answers), dnsrail in front of them on the
# socket data plane, a few dig queries, a bounded load, a reload, a summary.
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
}
trap cleanup EXIT

VIP=127.0.0.1:15353
B1=127.0.0.1:15301
B2=127.0.0.1:15302
B3=127.0.0.1:15303
QUERIES=${DEMO_QUERIES:-200000}
RATE=${DEMO_RATE:-40000}

"$BIN/dnsrail-bench" backend --listen $B1 --threads 1 --duration 120 >"$WORK/b1.log" &
PIDS+=($!)
"$BIN/dnsrail-bench" backend --listen $B2 --threads 1 --delay-ms 20 --delay-fraction 0.2 --duration 120 >"$WORK/b2.log" &
PIDS+=($!)
"$BIN/dnsrail-bench" backend --listen $B3 --threads 1 --duration 120 >"$WORK/b3.log" &
PIDS+=($!)

write_config() {
    cat >"$WORK/dnsrail.toml" <<TOML
[engine]
io = "socket"
workers = 2
stats_interval_s = 2

[[frontend]]
listen = "$VIP"

[[backend]]
name = "fast"
address = "$B1"

[[backend]]
name = "$1"
address = "$2"
TOML
}
write_config mixed $B2
"$BIN/dnsrailctl" check -c "$WORK/dnsrail.toml"
"$BIN/dnsrail" -c "$WORK/dnsrail.toml" 2>"$WORK/engine.log" &
ENGINE=$!
PIDS+=($ENGINE)
for _ in $(seq 50); do
    dig @127.0.0.1 -p 15353 +tries=1 +time=1 ready.example >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== dig through the VIP ($VIP)"
dig @127.0.0.1 -p 15353 +tries=1 +time=2 www.example.com A | grep -E "status:|^www"
dig @127.0.0.1 -p 15353 +tries=1 +time=2 missing.nx.example A | grep -E "status:"

echo "== bounded load: $QUERIES queries at $RATE qps"
"$BIN/dnsrail-bench" load --target $VIP --queries "$QUERIES" --rate "$RATE" --max-duration 60 | tee "$WORK/load1.txt"

echo "== reload (SIGHUP): backend 'mixed' replaced by 'spare', under load"
"$BIN/dnsrail-bench" load --target $VIP --queries $((RATE * 3)) --rate "$RATE" --max-duration 60 >"$WORK/load2.txt" &
LOAD=$!
sleep 1
write_config spare $B3
kill -HUP $ENGINE
wait $LOAD
cat "$WORK/load2.txt"
sleep 2.2

echo "== engine log"
grep -E "engine started|reloaded|qps in|refused" "$WORK/engine.log" | sed 's/^[^ ]* *//' | tail -n 8
kill -TERM $ENGINE
wait $ENGINE 2>/dev/null || true
grep "final counters" "$WORK/engine.log" | sed 's/^[^ ]* *//'
echo "== backends"
kill -INT "${PIDS[@]:0:3}" 2>/dev/null || true
sleep 0.3
cat "$WORK"/b?.log | grep queries || true
lost1=$(grep -oE 'lost [0-9]+' "$WORK/load1.txt" | awk '{print $2}')
lost2=$(grep -oE 'lost [0-9]+' "$WORK/load2.txt" | awk '{print $2}')
echo "== summary: lost $lost1 of $QUERIES in the steady run, $lost2 of $((RATE * 3)) across the reload"
