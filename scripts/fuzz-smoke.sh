#!/usr/bin/env bash
# Short libFuzzer run of every weft-wire fuzz target on stable Rust.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 10 (or $FUZZ_SECONDS); targets default to all of them.
# Needs cargo-fuzz. Without it the script says so and exits 0 (so CI can call it
# unconditionally), unless WEFT_FUZZ_INSTALL=1, in which case it runs
# `cargo install cargo-fuzz --locked` first. Exits nonzero if any target crashes, panics,
# leaks past the RSS limit or times out; the reproducer is left in
# dataplane/wire/fuzz/artifacts/<target>/ and can be replayed with
#   cd dataplane/wire/fuzz && cargo fuzz run <target> -s none -a artifacts/<target>/<file>
#
# Stable-Rust flags: `-s none` (sanitizers need nightly `-Zsanitizer`); `-a` keeps debug
# assertions and overflow checks on in the optimized fuzz build. New corpus entries found during
# the run go to a scratch directory, not into the committed corpus (growing and minimizing the
# corpus: dataplane/wire/fuzz/README.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/dataplane/wire/fuzz"
all_targets=(datagram reassembly dictionary world identity addresses tcp_tunnel netconf)

secs="${1:-${FUZZ_SECONDS:-10}}"
if [[ $# -gt 0 ]]; then shift; fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=("${all_targets[@]}"); fi

if ! [[ "$secs" =~ ^[0-9]+$ ]] || [[ "$secs" -eq 0 ]]; then
    echo "fuzz-smoke: seconds must be a positive integer, got '$secs'" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [[ "${WEFT_FUZZ_INSTALL:-0}" == 1 ]]; then
        echo "fuzz-smoke: installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    else
        echo "fuzz-smoke: cargo-fuzz not installed (cargo install cargo-fuzz --locked, or set WEFT_FUZZ_INSTALL=1); skipping"
        exit 0
    fi
fi

cd "$fuzz_dir"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "fuzz-smoke: building ${#targets[@]} target(s)"
for t in "${targets[@]}"; do
    cargo fuzz build -s none -a "$t"
done

failed=()
for t in "${targets[@]}"; do
    echo "fuzz-smoke: $t for ${secs}s"
    mkdir -p "$scratch/$t" "artifacts/$t"
    # First corpus dir receives new inputs (scratch); the committed corpus is read only.
    if cargo fuzz run -s none -a "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$scratch/$t.log" | sed "s/^/  $t: /" || true
    else
        echo "fuzz-smoke: $t FAILED; last lines of its log:" >&2
        tail -n 60 "$scratch/$t.log" >&2
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} (reproducers in $fuzz_dir/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} target(s) ran ${secs}s without a crash"
