#!/usr/bin/env bash
# Set up, build and index the demo library (or the folder given), and serve search on
# http://127.0.0.1:8000. A second run reuses what exists and starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/foley demo "$@"
