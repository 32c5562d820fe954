#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine, checks formatting and lints (rustfmt,
# clippy with warnings as errors), and runs the whole test suite: the layering check, unit
# tests, scene and command tests, command-line tests, rendering tests on lavapipe (golden
# images), a real window under Xvfb, the audience server with real WebSocket clients, the
# audience page in a real Chromium, and headset sessions against a real OpenXR runtime
# (Monado). Extra arguments go to `cargo test`.
source "$(dirname "$0")/common.sh"
# Xvfb for the window test; Debian's Chromium for the audience page test, driven by
# playwright-core from npm (1.60, which runs on the Node.js 18 of Debian 12 and anything newer);
# ngircd, a real IRC server the chat bridge test starts on loopback (its own system service is
# left as the package sets it up; the test uses a free port of its own); liblo's oscsend and
# oscdump and libltc for the show-control tests; ffmpeg (the program output's encoder, and
# ffprobe and an SRT listener in its tests) and nginx with its RTMP module (the ingest server
# the streaming test starts on a loopback port of its own); nats-server, with JetStream, for the
# scale-out tests (started on loopback ports, stores in temporary folders); espeak-ng, synthetic speech for the
# live captions' test.
install_packages "${BUILD_PACKAGES[@]}" xvfb xauth chromium ngircd liblo-tools curl libltc-dev ffmpeg nginx libnginx-mod-rtmp espeak-ng nats-server
# Live captions: the recogniser (Moonshine, from PyPI with its model); espeak-ng speaks the
# tests' lines.
ensure_captions_engine
command -v node >/dev/null 2>&1 || install_packages nodejs npm
if [ ! -d tests/e2e/node_modules/playwright-core ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
    say "installing the browser test's npm packages (playwright-core)"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
# A real OpenXR runtime for the headset session tests: Monado in a Debian 13 root folder,
# made once (about 3 minutes, 1.1 GB) in /var/cache/parvis/monado-trixie and reused.
scripts/xr-runtime.sh prepare
ensure_rust
export PARVIS_FORCE_LAVAPIPE=1
use_lavapipe_if_needed
ensure_rust_lints
# Formatting and lints first: they take seconds once the dependencies are checked, and a
# failure there is cheaper to find than after the full build.
say "checking formatting (cargo fmt)"
cargo fmt --all -- --check
cargo fmt --manifest-path crates/fuzz/Cargo.toml -- --check
# Lints in the same pass as the build: clippy's driver compiles our crates (it is rustc with
# clippy's lints added), so the dependencies are built once, for the tests, instead of a second
# time in check mode for `cargo clippy` (that pass took 7 of a cold run's 30 minutes). The
# same lints as `cargo clippy --workspace --all-targets -- -D warnings`, benches included;
# CLIPPY_ARGS is how cargo-clippy hands its arguments to the driver (`__CLIPPY_HACKERY__`
# separates them). Developers run `cargo clippy` as usual.
say "building every target with clippy's lints (warnings are errors; cold, about 20 minutes on 2 cores)"
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver || rustup which clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo build --workspace --all-targets --locked
say "running the tests"
cargo test --workspace --locked "$@"
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
# The fuzz targets, a few seconds each (half a minute in all), so the harness cannot rot; the
# long runs are in docs/benchmarks.md. The brief profile leaves out debug info (38 s less of a
# cold build).
say "fuzzing each parser briefly (FUZZ_PROFILE=brief scripts/fuzz.sh all 3)"
FUZZ_PROFILE=brief scripts/fuzz.sh all 3
