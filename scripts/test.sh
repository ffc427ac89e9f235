#!/usr/bin/env bash
# The test command (README "Test"): formatting, lints, docs, unit tests, the conformance suite
# against ../shared/vectors, and the fuzz-corpus replay. Runs on a fresh machine that has only the
# Rust toolchain. Set WEFT_FUZZ_SECONDS=N to also run every fuzz target for N seconds (installs
# cargo-fuzz if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The toolchain's rustfmt and clippy components are needed; add them if this machine lacks them.
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done

step "test dependencies (iproute2, iptables, ping for the network-namespace tests)"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo test (unit, conformance vectors, fuzz corpus replay, CLI)"
cargo test --workspace --locked

if [[ -n "${WEFT_FUZZ_SECONDS:-}" ]]; then
  step "fuzz smoke (${WEFT_FUZZ_SECONDS}s per target)"
  WEFT_FUZZ_INSTALL=1 scripts/fuzz-smoke.sh "${WEFT_FUZZ_SECONDS}"
fi

step "all checks passed"
