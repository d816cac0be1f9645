#!/usr/bin/env bash
# Set up, then lint, type-check and run the tests. `--slow` runs the slow tests instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PATH="$PWD/.venv/bin:$PATH"

marker="not slow"
if [ "${1:-}" = "--slow" ]; then
    marker="slow"
    shift
fi

ruff check .
ruff format --check .
mypy
lint-imports
set +e
python -m pytest -m "$marker" -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
