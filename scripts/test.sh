#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine and runs the whole test suite:
# unit tests, scene and command tests, command-line tests, rendering tests on lavapipe
# (golden images) and a real window under Xvfb. Extra arguments go to `cargo test`.
source "$(dirname "$0")/common.sh"
install_packages "${BUILD_PACKAGES[@]}" xvfb xauth
ensure_rust
export PARVIS_FORCE_LAVAPIPE=1
use_lavapipe_if_needed
say "building and running the tests (a cold build takes 15-25 minutes on 2 cores)"
cargo test --locked "$@"
