#!/usr/bin/env bash
# Runs the benchmarks (docs/benchmarks.md). Uses the dev profile, whose dependencies are
# fully optimised, so it reuses the test build instead of a 15-minute release build.
source "$(dirname "$0")/common.sh"
install_packages "${BUILD_PACKAGES[@]}"
ensure_rust
use_lavapipe_if_needed
cargo bench --locked --profile dev --bench venue "$@"
