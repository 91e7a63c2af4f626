#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ (cargo-fuzz layout) and runs each one briefly from its checked-in
# seeds; fails on a crash, a panic, a hang past libFuzzer's timeout, or a build error.
#
#   scripts/fuzz-smoke.sh                         every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh tunnel_stream    a longer run of one target
#
# Only a stable toolchain is assumed: cargo-fuzz passes nightly-only flags to rustc, which stable
# accepts with RUSTC_BOOTSTRAP=1. No sanitizer by default (FUZZ_SANITIZER=address to try ASan, whose
# runtime ships with stable rustc); Rust's own checks (bounds, overflow with debug assertions,
# panics) still turn into findings. Findings are written to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-none}
# inside the shared target dir (gitignored), apart from the main workspace's builds
target_dir=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz-smoke: installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

work=$(mktemp -d)
trap 'rm -rf "$work" || true' EXIT
# the targets make their temp workspace and store under TMPDIR: removed with $work
export RUSTC_BOOTSTRAP=1 TMPDIR="$work"

cd fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
# Dev profile (with debug assertions): a much shorter one-off build than release; a smoke run needs
# coverage and checks more than executions per second.
fuzz_flags=(--dev --sanitizer "$sanitizer" --target-dir "$target_dir")
start=$SECONDS
cargo fuzz build "${fuzz_flags[@]}"
echo "fuzz-smoke: built ${#targets[@]} targets in $((SECONDS - start)) s"

for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target"
  echo "fuzz-smoke: $target for ${seconds} s"
  # new inputs go to $work; the checked-in seeds are only read
  if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "$work/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      2> "$work/$target.log"; then
    tail -n 60 "$work/$target.log" >&2
    echo "fuzz-smoke: FAILED: $target found a crash; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  # the last status line (coverage: cov edges, ft features, corp corpus size, exec/s) and the counts
  grep -E "^#[0-9]+" "$work/$target.log" | tail -n 1 || true
  grep -E "^stat::number_of_executed_units|^Done " "$work/$target.log" || true
done
echo "fuzz-smoke: ${#targets[@]} targets ran ${seconds} s each without a finding"
