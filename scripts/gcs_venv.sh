#!/usr/bin/env bash
# Create (if missing) and fill the venv of the opt-in gs:// test (tests/integration/gcs):
# /work/gcs-venv, or $OREAL_GCS_VENV. Idempotent: a second run only checks the pins.
#
# Separate from the project venv, like the vLLM check: gcsfs 2026.10.1 accepts the project's
# fsspec==2026.9.0 (it needs fsspec>=2026.9.0), but pulls google-cloud-storage, grpcio and
# protobuf, which the default install and CI do not need. `oreal.bucket` imports no torch, so none
# is installed: the bucket's own dependencies at the project's pins, gcsfs, the pure-Python GCS
# JSON-API emulator gcp-storage-emulator, pytest, and oreal itself without dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OREAL_GCS_VENV:-/work/gcs-venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "gcs_venv: creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }

pip_install -r tests/integration/gcs/requirements.txt  # every version pinned
pip_install --no-deps -e .
"$VENV/bin/python" -c "import gcsfs, gcp_storage_emulator, oreal.bucket; print('gcs_venv: ready', gcsfs.__version__)"
