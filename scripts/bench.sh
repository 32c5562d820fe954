#!/usr/bin/env bash
# Runs the benchmarks (docs/benchmarks.md). Uses the `perf` profile: the dev profile with the
# dependencies fully optimised (the test build has them at opt-level 2), so our code builds as
# in the tests and only the dependencies are built a second time, not a 15-minute release build.
source "$(dirname "$0")/common.sh"
install_packages "${BUILD_PACKAGES[@]}"
ensure_rust
use_lavapipe_if_needed
cargo bench --locked --profile perf --bench venue "$@"
