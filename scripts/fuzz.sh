#!/usr/bin/env bash
# Coverage-guided fuzzing of the model layer's parsers with AFL++ (cargo-afl, stable Rust).
#
#   scripts/fuzz.sh TARGET SECONDS   fuzz one target (see crates/fuzz/src/lib.rs) for that long
#   scripts/fuzz.sh all SECONDS      each target in turn, SECONDS each
#   scripts/fuzz.sh list             the targets
#   scripts/fuzz.sh build            only install cargo-afl and build the targets
#   FUZZ_PROFILE=brief scripts/fuzz.sh all SECONDS
#                                    a lighter build (CI's pass: that the targets build and run)
#   FUZZ_EXECUTIONS=N scripts/fuzz.sh TARGET SECONDS
#                                    stop after about N executions, or SECONDS, whichever first
#
# Installs cargo-afl and builds AFL++ the first time (a few minutes). Fails when a target
# crashed or hung, listing the inputs (kept in $FUZZ_OUT, default ~/.cache/parvis-fuzz/TARGET):
# make each one a regression test. Prints the executions and paths found.
source "$(dirname "$0")/common.sh"
set -euo pipefail

targets=(audience_frame moderation rules irc_line scene command_log gltf osc subtitles vmc poses nats websocket)
if [ "${1:-}" = list ]; then
    printf '%s\n' "${targets[@]}"
    exit 0
fi
if [ "${1:-}" = build ] && [ $# -eq 1 ]; then
    target=build
    seconds=0
elif [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh TARGET|all SECONDS | build   (scripts/fuzz.sh list)" >&2
    exit 2
else
    target=$1
    seconds=$2
fi
if [ "$target" != all ] && [ "$target" != build ] && ! printf '%s\n' "${targets[@]}" | grep -qx "$target"; then
    echo "no fuzz target named $target; targets: ${targets[*]}" >&2
    exit 2
fi

ensure_rust
# cargo-afl, pinned, and AFL++ built by it (needs make and a C compiler: build-essential).
AFL_VERSION=0.18.2
if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
    say "installing cargo-afl $AFL_VERSION"
    cargo install --locked --version "$AFL_VERSION" cargo-afl
fi
# AFL++ is built once per toolchain (cargo-afl's install may have done it already).
if ! built=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$built"; then
    echo "$built" >&2
    exit 1
fi
# Instrumented code goes in a target folder of its own (it would clash with the engine's).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/parvis-fuzz-target}"
manifest=crates/fuzz/Cargo.toml
# FUZZ_PROFILE=brief: CI's pass, a lighter build (crates/fuzz/Cargo.toml); release otherwise.
profile="${FUZZ_PROFILE:-release}"
say "building the fuzz targets with AFL instrumentation (profile $profile)"
cargo afl build --profile "$profile" --locked --manifest-path "$manifest"
if [ "$target" = build ]; then
    exit 0
fi

# AFL++ settings for a machine it does not own: no CPU governor or core dump tuning.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
export AFL_SKIP_CRASHES=0 AFL_AUTORESUME=0

run_one() {
    local name=$1 out="${FUZZ_OUT:-$HOME/.cache/parvis-fuzz}/$1"
    rm -rf "$out"
    mkdir -p "$out"
    say "fuzzing $name for $seconds s"
    local limit=()
    if [ -n "${FUZZ_EXECUTIONS:-}" ]; then limit=(-E "$FUZZ_EXECUTIONS"); fi
    cargo afl fuzz -V "$seconds" "${limit[@]}" -t 1000 -i "crates/fuzz/corpus/$name" -o "$out" -- "$CARGO_TARGET_DIR/$profile/$name" \
        > "$out/afl.log" 2>&1 || { tail -20 "$out/afl.log" >&2; return 1; }
    local stats="$out/default/fuzzer_stats"
    local execs paths crashes hangs speed elapsed edges
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    paths=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats")
    speed=$(awk -F' *: *' '$1=="execs_per_sec"{print $2}' "$stats")
    elapsed=$(awk -F' *: *' '$1=="run_time"{print $2}' "$stats")
    edges=$(awk -F' *: *' '$1=="edges_found"{f=$2} $1=="total_edges"{t=$2} END{print f "/" t}' "$stats")
    crashes=$(find "$out/default/crashes" -type f ! -name README.txt | wc -l)
    hangs=$(find "$out/default/hangs" -type f | wc -l)
    printf '%-15s %12s executions in %6s s %10s/s %6s paths %12s edges %3s crashes %3s hangs\n' \
        "$name" "$execs" "$elapsed" "$speed" "$paths" "$edges" "$crashes" "$hangs"
    if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
        echo "fuzz target $name found problems; inputs in $out/default/crashes and $out/default/hangs:" >&2
        find "$out/default/crashes" "$out/default/hangs" -type f ! -name README.txt >&2
        return 1
    fi
}

if [ "$target" = all ]; then
    for name in "${targets[@]}"; do run_one "$name"; done
else
    run_one "$target"
fi
