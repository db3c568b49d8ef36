#!/usr/bin/env bash
# Instructions per query + answer through the core, counted by callgrind:
# a figure that does not move with the machine's noise (unlike time), for
# comparing two versions of the hot path.
#
#   scripts/instructions.sh [RULES] [POLICY]     (default: 0 round-robin)
#
# Runs perf's core_loop at two query counts and divides the difference in
# instructions by the difference in queries, so start-up and rule
# compilation cancel out. Bounded: 2 × (10 000 .. 60 000 round trips).
set -euo pipefail
cd "$(dirname "$0")/.."
RULES=${1:-0}
POLICY=${2:-round-robin}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind missing (scripts/setup.sh installs it)" >&2; exit 1; }
cargo build --release -q -p dnsrail-perf --bin core_loop
bin=target/release/core_loop
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$bin" "$1" "$RULES" "$POLICY" >/dev/null 2>"$out/log.$1" ||
        { cat "$out/log.$1" >&2; exit 1; }
    # "Collected : N" is the total instruction count of the run.
    awk '/Collected :/ {print $NF}' "$out/log.$1"
}
lo=10000
hi=60000
a=$(count $lo)
b=$(count $hi)
echo "instructions per query + answer ($RULES rules, $POLICY): $(( (b - a) / (hi - lo) ))"
