#!/usr/bin/env bash
# The whole test suite: set-up, format check, clippy, every test.
# Release mode: the integration tests push tens of thousands of queries.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"
# Tests that cannot run here (no root, too few CPUs) pass and append a line
# to this file (dnsrail_bench::netns::skip).
export DNSRAIL_SKIPPED=$(mktemp)
trap 'rm -f "$DNSRAIL_SKIPPED"' EXIT
cargo test --workspace --release
echo "== scripts/instructions.sh (the callgrind tool still counts)"
out=$(scripts/instructions.sh 0)
echo "$out"
n=$(echo "$out" | awk -F': ' '/instructions per query/ {print $2}')
# Not a performance threshold: a count of zero or none means the tool broke.
[ -n "$n" ] && [ "$n" -gt 0 ] || { echo "instructions.sh printed no count" >&2; exit 1; }
echo "== scripts/fuzz.sh (a smoke run of every fuzz target from its corpus)"
DNSRAIL_FUZZ_SCRATCH=1 scripts/fuzz.sh 15

# Tests that need root (namespaces, XDP) print SKIPPED and pass without it:
# say how much this run did not test.
skipped=$(wc -l < "$DNSRAIL_SKIPPED")
if [ "$skipped" -gt 0 ]; then
    echo "== $skipped test(s) SKIPPED, passed without testing anything:"
    sed 's/^/   /' "$DNSRAIL_SKIPPED"
else
    echo "== no test skipped"
fi
