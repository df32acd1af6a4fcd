"""Record factories shared by the bucket tests and the bucket benchmark."""

from __future__ import annotations

from oreal.trajectory import RolloutSample, Verdict


def make_samples(step: int, n_prompts: int = 2, per_prompt: int = 3, seed: int = 0) -> list[RolloutSample]:
    """Deterministic but non-trivial samples (unicode text, varying lengths, exact float logprobs)."""
    out = []
    for p in range(n_prompts):
        for j in range(per_prompt):
            n = 3 + (p * 7 + j * 5 + seed) % 11
            out.append(
                RolloutSample(
                    step=step,
                    prompt_id=f"prompt-{seed}-{p}",
                    sample_index=j,
                    prompt_text=f"Solve x+{p}=∑ {seed}",
                    prompt_token_ids=list(range(p, p + 5)),
                    response_token_ids=[(seed + p * 31 + j * 17 + t) % 50_000 for t in range(n)],
                    response_text=f"answer {j} → \\boxed{{{p + j}}}",
                    gold=str(p),
                    policy_version=max(0, step - j % 2),
                    truncated=j == per_prompt - 1,
                    logprobs=[-(t + 1) / 7.0 for t in range(n)],
                )
            )
    return out


def make_verdicts(samples: list[RolloutSample]) -> list[Verdict]:
    return [
        Verdict(
            step=s.step,
            prompt_id=s.prompt_id,
            sample_index=s.sample_index,
            correct=s.sample_index % 2 == 0,
            status="correct" if s.sample_index % 2 == 0 else "incorrect",
            extracted=None if s.sample_index == 1 else str(s.sample_index),
            seconds=0.25 * s.sample_index,
        )
        for s in samples
    ]
