"""Opt-in check of the vLLM engine with the real `vllm` (CPU build), run from its own venv.

    OREAL_VLLM_PYTHON=/path/to/vllm-venv/bin/python   # see README.md for the venv
    $OREAL_VLLM_PYTHON tests/integration/vllm/check_vllm_engine.py \
        --model models/smollm2-135m-instruct --out /tmp/vllm-check.json

What it proves, on SmolLM2-135M-Instruct:
1. the engine starts and generates from token ids, with truncation flags and log-probs;
2. per-request seeds: the same (seed) gives the same tokens whatever the batch, other seeds differ;
3. the raw log-probs vLLM returns equal a transformers forward pass of the same weights;
4. `load()` of a second policy reloads weights in place (no new engine), and generation then
   follows the new weights (checked against transformers on the perturbed weights).
Timings: engine start, weight reload, generation throughput.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "trainer"))

from oreal.engines.base import SamplingOptions, sample_seed  # noqa: E402
from oreal.engines.vllm import VLLMEngine  # noqa: E402

QUESTIONS = [
    "What is 7 plus 5?",
    "Tom has 9 apples and gives 4 away. How many apples are left?",
    "What is 6 times 3?",
    "There are 4 boxes with 5 pens in each box. How many pens in total?",
]


def perturbed_copy(model: Path, out: Path, scale: float = 0.9) -> Path:
    """A copy of `model` whose MLP down-projections are scaled: a different, still fluent policy."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out, dirs_exist_ok=True)
    for f in out.glob("*.safetensors"):
        tensors = load_file(str(f))
        for name in tensors:
            if "mlp.down_proj" in name:
                tensors[name] = (tensors[name].float() * scale).to(tensors[name].dtype)
        save_file(tensors, str(f), metadata={"format": "pt"})
    return out


def hf_logprobs(model_dir: Path, prompt: list[int], tokens: list[int]) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "smollm2-135m-instruct")
    parser.add_argument("--out", type=Path, default=Path("vllm-check.json"))
    args = parser.parse_args()
    result: dict = {"model": str(args.model)}

    engine = VLLMEngine(seed=0, dtype="float32", max_model_len=512, gpu_memory_utilization=0.5)
    start = time.perf_counter()
    engine.load(args.model, version=0)
    result["engine_start_seconds"] = round(time.perf_counter() - start, 2)
    tok = engine.tokenizer
    prompts = [
        tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False)["input_ids"]
        for q in QUESTIONS
    ]  # fmt: skip
    sampled = SamplingOptions(temperature=0.8, top_p=1.0, max_new_tokens=48)
    seeds = [sample_seed(0, 0, str(i), 0) for i in range(len(prompts))]

    start = time.perf_counter()
    batch = engine.generate(prompts * 4, seeds * 4, sampled)
    gen_seconds = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for g in batch)
    result["generate_tokens_per_second"] = round(tokens / gen_seconds, 1)
    result["truncated"] = sum(g.truncated for g in batch)
    alone = [engine.generate([p], [s], sampled)[0] for p, s in zip(prompts, seeds, strict=True)]
    result["same_seed_same_tokens"] = all(
        batch[i].token_ids == alone[i % 4].token_ids for i in range(len(batch))
    )
    other = engine.generate(prompts, [s + 1 for s in seeds], sampled)
    result["other_seed_differs"] = any(o.token_ids != a.token_ids for o, a in zip(other, alone, strict=True))
    result["logprobs_per_token"] = all(len(g.logprobs) == len(g.token_ids) for g in batch)

    greedy = SamplingOptions(temperature=0.0, max_new_tokens=24)
    before = engine.generate(prompts[:1], [0], greedy)[0]
    expected = hf_logprobs(args.model, prompts[0], before.token_ids)
    result["logprob_max_abs_diff_vs_transformers"] = max(
        abs(a - b) for a, b in zip(before.logprobs, expected, strict=True)
    )

    with tempfile.TemporaryDirectory() as tmp:
        second = perturbed_copy(args.model, Path(tmp) / "policy-v1")
        llm_id = id(engine.llm)
        start = time.perf_counter()
        engine.load(second, version=1)
        result["reload_seconds"] = round(time.perf_counter() - start, 2)
        result["reload_kept_engine"] = id(engine.llm) == llm_id and engine.reloads == 1
        after = engine.generate(prompts[:1], [0], greedy)[0]
        expected_after = hf_logprobs(second, prompts[0], after.token_ids)
        result["reload_logprob_max_abs_diff_vs_transformers"] = max(
            abs(a - b) for a, b in zip(after.logprobs, expected_after, strict=True)
        )
        stale = hf_logprobs(args.model, prompts[0], after.token_ids)
        result["reload_changed_logprobs"] = max(
            abs(a - b) for a, b in zip(after.logprobs, stale, strict=True)
        )
    result["sample_text"] = alone[0].text[:200]
    ok = (
        result["same_seed_same_tokens"]
        and result["other_seed_differs"]
        and result["logprobs_per_token"]
        and result["logprob_max_abs_diff_vs_transformers"] < 0.05
        and result["reload_kept_engine"]
        and result["reload_logprob_max_abs_diff_vs_transformers"] < 0.05
        and result["reload_changed_logprobs"] > result["reload_logprob_max_abs_diff_vs_transformers"]
    )
    result["ok"] = bool(ok)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
