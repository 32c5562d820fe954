#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine and runs the engine on the built-in
# venue: in a window when there is a display, headless otherwise. Extra arguments go to
# `parvis run` (e.g. `scripts/run.sh scenes/cloister.ron --viewpoint gallery`).
source "$(dirname "$0")/common.sh"
install_packages "${BUILD_PACKAGES[@]}"
ensure_rust
use_lavapipe_if_needed
say "building parvis (the first build takes 15-25 minutes on 2 cores; later ones seconds)"
cargo build --locked --bin parvis
say "running: parvis run $*"
exec "$CARGO_TARGET_DIR/debug/parvis" run "$@"
