#!/usr/bin/env bash
# Coverage-guided fuzzing of the engine's parsers and data paths (libFuzzer
# through libfuzzer-sys, on the stable toolchain: rustc's sanitizer-coverage
# flags, no sanitizer, debug assertions and overflow checks on).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60, all)
#
# Each target runs from its committed corpus (fuzz/corpus/TARGET, seeded by
# fuzz/seeds/TARGET) for the given time; new inputs that reach new code are
# added to the corpus, crashes go to fuzz/artifacts/TARGET and fail the run.
# Prints the executions per target and in total. Bounded: every target
# stops after SECONDS_PER_TARGET. With DNSRAIL_FUZZ_SCRATCH=1 (the smoke run
# of scripts/test.sh) the corpus is copied to a scratch directory and the
# committed one is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wire frame rules config)
TRIPLE=$(rustc -vV | awk '/^host:/ {print $2}')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_FUZZ:-$PWD/target/fuzz}
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
(cd fuzz && cargo build --release --locked -q --target "$TRIPLE" --bins)
bin=$CARGO_TARGET_DIR/$TRIPLE/release
total=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    corpus="fuzz/corpus/$t"
    if [ "${DNSRAIL_FUZZ_SCRATCH:-0}" = 1 ]; then
        corpus=$(mktemp -d)
        cp -r "fuzz/corpus/$t/." "$corpus/"
    fi
    log=$(mktemp)
    set +e
    # The corpus directory first (it grows), the seeds second (read only).
    "$bin/$t" "$corpus" "fuzz/seeds/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log")
    runs=${runs:-0}
    total=$((total + runs))
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz $t: $runs executions in ${SECS} s, $cov, corpus $(ls "$corpus" | wc -l) inputs"
    [ "$corpus" = "fuzz/corpus/$t" ] || rm -rf "$corpus"
    if [ $rc -ne 0 ]; then
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 >&2
        rm -f "$log"
        echo "fuzz $t: FAILED (crash input in fuzz/artifacts/$t)" >&2
        exit 1
    fi
    rm -f "$log"
done
echo "fuzz: $total executions in total"
