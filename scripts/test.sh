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
cargo test --workspace --release
