#!/usr/bin/env bash
# The one test command (README.md, .ci/run): installs and starts what the tests need, then runs
# formatting, lints, every test and doc test, and the loom model of the breaker's state machine.
# Fails loudly: any step that fails stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Services needed by the end-to-end tests are started by scripts/services/*.sh (each one installs its
# component, starts it on 127.0.0.1 and registers its PID for the trap below). Nothing yet needs one.
export PALISADE_PIDS_FILE
PALISADE_PIDS_FILE="$(mktemp)"
cleanup() {
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$PALISADE_PIDS_FILE"
  rm -f "$PALISADE_PIDS_FILE"
}
trap cleanup EXIT
for svc in scripts/services/*.sh; do
  [ -e "$svc" ] || continue
  step "service: $svc"
  # shellcheck source=/dev/null
  source "$svc"
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (unit, integration and doc tests)"
cargo test --workspace --all-features

step "every bench runs once (criterion test mode; asserts zero allocations)"
cargo test --workspace --all-features --benches

step "loom model of the breaker's admission state machine"
RUSTFLAGS="--cfg palisade_loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p palisade-breaker --release --lib -- loom

step "all checks passed"
