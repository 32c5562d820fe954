# Shared by scripts/run.sh and scripts/test.sh: installs what Parvis needs and sets up the
# environment. Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# One target folder for every checkout and every command: Bevy is slow to build, so the
# cold build is paid once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parvis-target}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian/Ubuntu packages given that are missing; skips apt entirely when none are.
install_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing system packages: ${missing[*]}"
        # Waits for another apt (an unattended upgrade, a second install) instead of failing on
        # its lock.
        as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Build dependencies (C libraries of crates we use or will use: ALSA and D-Bus for audio,
# udev for input devices), the Vulkan loader and Mesa's drivers (lavapipe renders on the CPU
# where there is no GPU), and the X11 libraries winit loads at run time for the window.
BUILD_PACKAGES=(build-essential pkg-config libasound2-dev libudev-dev libdbus-1-dev
    libvulkan1 mesa-vulkan-drivers libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0)

# The live captions' speech recogniser: PyPI's moonshine-voice 0.1.0, the last release that
# ships its English model inside the wheel (later ones download it at run time), in a Python
# environment of its own. `--no-deps`: the recogniser script loads the package's C library with
# ctypes and needs none of its Python dependencies. About 56 MB, once.
ensure_captions_engine() {
    local venv="${PARVIS_CAPTIONS_VENV:-$HOME/.cache/parvis/captions-venv}"
    if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("moonshine_voice") is None)' 2>/dev/null; then
        say "installing the captions' speech recogniser (PyPI moonshine-voice 0.1.0, its English model inside) in $venv"
        install_packages python3-venv
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps moonshine-voice==0.1.0
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            say "installing the Rust toolchain (1.95) with rustup"
            install_packages rustup
            rustup toolchain install 1.95.0 --profile minimal --component rustfmt --component clippy
            rustup default 1.95.0
        fi
    fi
}

# rustfmt and clippy, which the tests run before anything else (a minimal toolchain lacks them).
ensure_rust_lints() {
    if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
        return
    fi
    if command -v rustup >/dev/null 2>&1; then
        say "adding rustfmt and clippy to the Rust toolchain"
        rustup component add rustfmt clippy
    else
        say "cargo fmt and cargo clippy are missing and there is no rustup to add them"
        return 1
    fi
}

# Use lavapipe when there is no GPU, or always when PARVIS_FORCE_LAVAPIPE=1 (tests do, so
# golden images compare like with like).
use_lavapipe_if_needed() {
    local icd
    icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n1 || true)
    if [ -n "$icd" ] && { [ "${PARVIS_FORCE_LAVAPIPE:-0}" = 1 ] || ! ls /dev/dri/renderD* >/dev/null 2>&1; }; then
        export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
        say "rendering on the CPU through lavapipe ($icd)"
    fi
    export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
    if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR}" ]; then
        export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/parvis-runtime-$(id -u)"
        mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
    fi
}
