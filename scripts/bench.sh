#!/usr/bin/env bash
# The comparison of record: direct to a backend, dnsrail over AF_XDP
# (adaptive and busy polling), dnsrail over kernel sockets and dnsdist, one
# after the other in one run on the namespace topology (scripts/netns.sh),
# with kxdpgun (open-loop rate sweep), dnsperf (closed loop) and our own
# load driver (latency, also against backends answering 20 % of queries
# after 20 ms). Writes docs/bench/results.json, three PNG plots in
# docs/bench/ and the results section of docs/benchmarks.md. Needs root.
# Bounded: every step has a fixed duration (the default run takes 4–6
# minutes); the namespaces and every process in them are removed on exit.
#
# `scripts/bench.sh cache` runs the cached contenders instead: dnsrail over
# AF_XDP with its packet cache and the XDP answer tier, the same without the
# tier, and dnsdist with its packet cache, on a mix of about 90 % hits, into
# docs/bench/cache/ and the "compare-cache" section (about 7 minutes).
#
#   scripts/bench.sh                                    the full run
#   scripts/bench.sh --rates 50000,100000 --secs 2      a shorter sweep
#   scripts/bench.sh --contenders xdp,dnsdist           some contenders only
#   scripts/bench.sh cache                              the cached contenders
#   scripts/bench.sh cache --hit-pct 80                 … on another mix
#   target/release/dnsrail-bench compare --help         every option
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "bench.sh: needs root (namespaces, XDP)" >&2; exit 1; }
bash scripts/setup.sh >/dev/null
cargo build --release -q -p dnsrail-engine -p dnsrail-bench
if [ "${1:-}" = cache ]; then
    shift
    DNSRAIL_BENCH_COMMAND="scripts/bench.sh cache${*:+ $*}" \
        target/release/dnsrail-bench compare --contenders xdp-tier,xdp-cache,dnsdist-cache \
        --out docs/bench/cache --doc docs/benchmarks.md --section compare-cache "$@"
else
    DNSRAIL_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
        target/release/dnsrail-bench compare --out docs/bench --doc docs/benchmarks.md "$@"
fi
