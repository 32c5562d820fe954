#!/usr/bin/env bash
# Runs the Moonshine recogniser (scripts/captions/moonshine.py) with the Python environment that
# scripts/test.sh and scripts/run.sh set up (PyPI's moonshine-voice 0.1.0, which ships its
# English model): samples on standard input, JSON lines on standard output.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PARVIS_CAPTIONS_VENV:-$HOME/.cache/parvis/captions-venv}"
if [ ! -x "$venv/bin/python3" ]; then
    echo "moonshine: no Python environment at $venv: run scripts/test.sh (or scripts/run.sh) once, or" >&2
    echo "  python3 -m venv $venv && $venv/bin/pip install --no-deps moonshine-voice==0.1.0" >&2
    exit 2
fi
exec "$venv/bin/python3" "$here/moonshine.py" "$@"
