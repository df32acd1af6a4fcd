"""Tiny random models and synthetic scored batches for trainer tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from oreal.trajectory import RolloutSample, ScoredSample, Verdict

VOCAB = 64


def tiny_model_dir(path: Path, arch: str = "qwen2", seed: int = 0) -> Path:
    """A random 2-layer, hidden-32 causal LM saved in HF format (plus a stand-in tokenizer file)."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    return path


def scored_batch(
    step: int, prompts: int = 4, n: int = 4, seed: int = 0, pass_rates: list[float] | None = None
) -> list[ScoredSample]:
    """`prompts` groups of `n` random samples; group g has round(n * p_g) correct answers."""
    rng = random.Random(seed * 7919 + step)
    pass_rates = pass_rates or [0.25, 0.5, 0.75, 0.5][:prompts]
    out = []
    for g in range(prompts):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 7))]
        n_correct = round(n * pass_rates[g % len(pass_rates)])
        for i in range(n):
            response = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 9))]
            sample = RolloutSample(
                step=step,
                prompt_id=f"p{g}",
                sample_index=i,
                prompt_text="",
                prompt_token_ids=prompt,
                response_token_ids=response,
                response_text="",
                gold="",
                policy_version=step,
            )
            correct = i < n_correct
            verdict = Verdict(step, f"p{g}", i, correct, "correct" if correct else "incorrect")
            out.append(ScoredSample(sample, verdict))
    return out
