#!/usr/bin/env bash
# Set up Foley in ./.venv (idempotent: a second run with nothing changed takes a second).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "Foley needs Python 3.11 (found $("$PYTHON" --version))" >&2
    exit 1
fi

# The browser tests drive Debian's chromium through Playwright; a browser is never downloaded.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo -n)
    if ! "${as_root[@]}" apt-get install -y -q chromium >/dev/null; then
        "${as_root[@]}" apt-get update -q >/dev/null || true
        "${as_root[@]}" apt-get install -y -q chromium >/dev/null \
            || echo "warning: could not install chromium: the browser tests will be skipped" >&2
    fi
fi

stamp=.venv/.foley-setup
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch and torchvision first, pinned together: laion-clap imports torchvision.
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "$want" > "$stamp"
echo "Foley is set up in .venv"
