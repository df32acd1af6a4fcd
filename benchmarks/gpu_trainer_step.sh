#!/usr/bin/env bash
# The trainer-step benchmark on one NVIDIA GPU: random-init Qwen2.5-0.5B shape, bf16, DeepSpeed ZeRO-2
# and plain PyTorch (bf16 autocast), 16 prompts x 8 samples, prompts 256 and responses 512-1024 tokens,
# micro-batches of MICRO_BATCH (16) sequences.
# Env: BACKENDS (default "deepspeed torch"); CONFIGS: ';'-separated sets of extra trainer_step.py flags,
# one run per backend and set (default: one run with EXTRA, e.g. "--profile" or "--compile");
# TIMEOUT per run (200 s).
# Prints MFU (model FLOPs, see trainer_step.py) and the oreal/sft ratio for each run.
#
# Needs torch with CUDA, transformers, safetensors and DeepSpeed. On a machine without a package index,
# put wheels in .whl/ (deepspeed built with DS_BUILD_OPS=0, pydantic, hjson, ...): they are installed
# into /tmp/site first.
# Usage: bash benchmarks/gpu_trainer_step.sh [LOG_DIR]
set -u
log_dir=${1:-.}
mkdir -p "$log_dir"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/trainer PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v WARNING
common="--device cuda --preset qwen2.5-0.5b --dtype bfloat16 --prompts 16 --samples 8 --prompt-len 256 \
--response-len 1024 --micro-batch ${MICRO_BATCH:-16} --repeats 3 --threads 0"
IFS=';' read -r -a configs <<< "${CONFIGS:-${EXTRA:-}}"
[ ${#configs[@]} -eq 0 ] && configs=("")
for backend in ${BACKENDS:-deepspeed torch}; do
    for extra in "${configs[@]}"; do
        echo "== backend $backend $extra"
        log="$log_dir/trainer_step_${backend}$(echo "$extra" | tr -d ' -').log"
        timeout "${TIMEOUT:-200}" python3 benchmarks/trainer_step.py $common --backend "$backend" \
            --zero-stage 2 $extra > "$log" 2>&1
        echo "exit $?"
        grep -E "^(compiled|model|batch|  sft|oreal|profile|  )" "$log" || tail -20 "$log"
    done
done
