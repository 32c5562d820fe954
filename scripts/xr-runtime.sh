#!/usr/bin/env bash
# A real OpenXR runtime without a headset, for the XR session test and for trying `--xr` here:
# Monado's service with its null compositor and a simulated headset and controllers.
#
# Debian 12 has no Monado and Debian 13's needs a newer glibc, so Monado lives in a Debian 13
# (trixie) root folder, made once with debootstrap and kept in a fixed place
# ($PARVIS_XR_ROOT, default /var/cache/parvis/monado-trixie); it is rebuilt only when missing.
# The engine runs inside that folder too, next to the service, because both must load the same
# Vulkan driver build (lavapipe's device id depends on the Mesa version).
#
#   scripts/xr-runtime.sh prepare            make the root folder if missing (needs root; ~3 min, 1.1 GB)
#   scripts/xr-runtime.sh run CMD [ARGS...]  start Monado, run CMD inside the root folder with
#                                            the OpenXR environment set, stop Monado; CMD's exit status
#
# `run` works in a private mount namespace (unshare): its bind mounts of /proc, /dev, /sys,
# this checkout and the cargo target folder vanish with it, so nothing is left mounted.
# Environment for CMD: XR_RUNTIME_JSON, VK_DRIVER_FILES (lavapipe), XDG_RUNTIME_DIR, and
# PARVIS_XR_MONADO_PID (the service's pid, for tests that stop the runtime mid-session).
set -euo pipefail
ROOT="${PARVIS_XR_ROOT:-/var/cache/parvis/monado-trixie}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/parvis-target}"
# Libraries the engine's binary loads (built on the host) plus Monado and its Vulkan driver.
PACKAGES=(monado-service libopenxr1-monado libopenxr-loader1 libopenxr-dev mesa-vulkan-drivers
    libvulkan1 libasound2t64 libudev1 libdbus-1-3 libx11-6 libxcursor1 libxrandr2 libxi6
    libxkbcommon-x11-0 ca-certificates)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

prepare() {
    if [ -f "$ROOT/.parvis-ready" ]; then
        return
    fi
    say "making a Debian 13 root folder with Monado (OpenXR runtime) in $ROOT (once; about 3 minutes)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    as_root rm -rf "$ROOT.partial"
    as_root mkdir -p "$(dirname "$ROOT")"
    local keyring=()
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring /usr/share/keyrings/debian-archive-keyring.gpg)
    as_root debootstrap "${keyring[@]}" --variant=minbase trixie "$ROOT.partial" http://deb.debian.org/debian >/dev/null
    # Packages' install scripts must not start services inside the root folder.
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$ROOT.partial/usr/sbin/policy-rc.d" >/dev/null
    as_root chmod 755 "$ROOT.partial/usr/sbin/policy-rc.d"
    as_root unshare --mount --propagation private sh -euc '
        mount --rbind /proc "$1/proc"; mount --rbind /dev "$1/dev"; mount --rbind /sys "$1/sys"
        cp /etc/resolv.conf "$1/etc/resolv.conf"
        shift
        chroot "$0" sh -euc "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null"
    ' "$ROOT.partial" "$ROOT.partial" "${PACKAGES[@]}"
    as_root touch "$ROOT.partial/.parvis-ready"
    as_root rm -rf "$ROOT"
    as_root mv -T "$ROOT.partial" "$ROOT"
}

run() {
    prepare
    mkdir -p "$TARGET"
    # The inner script runs as root in its own mount namespace; it gets its paths as arguments.
    as_root unshare --mount --propagation private bash -euc '
        root=$1 repo=$2 target=$3; shift 3
        mount --rbind /proc "$root/proc"; mount --rbind /dev "$root/dev"; mount --rbind /sys "$root/sys"
        mount -t tmpfs tmpfs "$root/tmp"
        for dir in "$repo" "$target"; do mkdir -p "$root$dir"; mount --bind "$dir" "$root$dir"; done
        icd=$(ls "$root"/usr/share/vulkan/icd.d/lvp_icd*.json | head -n1)
        export XDG_RUNTIME_DIR=/tmp/xr VK_DRIVER_FILES=${icd#"$root"} VK_ICD_FILENAMES=${icd#"$root"}
        export XR_RUNTIME_JSON=/usr/share/openxr/1/openxr_monado.json WGPU_BACKEND=vulkan
        export XRT_COMPOSITOR_NULL=1 SIMULATED_ENABLE=1 SIMULATED_LEFT=simple SIMULATED_RIGHT=simple XRT_NO_STDIN=1 XRT_LOG=warning
        mkdir -p "$root/tmp/xr" && chmod 700 "$root/tmp/xr"
        chroot "$root" monado-service >"$root/tmp/monado.log" 2>&1 &
        monado=$!
        # Whatever ends this script (the command, an interrupt, a time-out), the service goes too.
        trap '\''kill "$monado" 2>/dev/null || true; wait "$monado" 2>/dev/null || true'\'' EXIT
        trap '\''exit 130'\'' INT TERM
        for _ in $(seq 100); do [ -S "$root/tmp/xr/monado_comp_ipc" ] && break; sleep 0.1; done
        if ! kill -0 "$monado" 2>/dev/null; then echo "monado-service did not start:" >&2; cat "$root/tmp/monado.log" >&2; exit 1; fi
        export PARVIS_XR_MONADO_PID=$monado
        status=0
        chroot "$root" /usr/bin/env --chdir="$PWD" "$@" || status=$?
        if [ "$status" -ne 0 ]; then echo "--- monado-service log ---" >&2; tail -n 40 "$root/tmp/monado.log" >&2; fi
        exit $status
    ' bash "$ROOT" "$REPO" "$TARGET" "$@"
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prepare | run CMD [ARGS...]" >&2; exit 2 ;;
esac
