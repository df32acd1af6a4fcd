"""The records that flow between the three roles: prompts, rollout samples and verdicts.

These plain dataclasses are the contract between rollout, verifier and trainer. The bucket
stores them as Parquet rows (see `oreal.bucket`); the trainer consumes `ScoredSample`s.
Keys are deterministic: a sample is identified by (step, prompt_id, sample_index).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prompt:
    """One training or evaluation problem."""

    prompt_id: str
    problem: str
    gold: str
    pass_rate: float | None = None


@dataclass
class RolloutSample:
    """One sampled answer to one prompt, as the rollout worker produced it."""

    step: int
    prompt_id: str
    sample_index: int
    prompt_text: str
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    response_text: str
    gold: str
    policy_version: int
    truncated: bool = False
    # log pi_old(y_t) of each response token under the sampling policy; empty if the engine gave none.
    logprobs: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.step, self.prompt_id, self.sample_index)


@dataclass
class Verdict:
    """The verifier's judgement of one sample; reward is +1 (correct) or -1 (anything else)."""

    step: int
    prompt_id: str
    sample_index: int
    correct: bool
    status: str  # correct | incorrect | no_answer | timeout | error
    extracted: str | None = None
    seconds: float = 0.0

    @property
    def reward(self) -> float:
        return 1.0 if self.correct else -1.0

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.step, self.prompt_id, self.sample_index)


@dataclass
class ScoredSample:
    """A rollout sample joined with its verdict: what the trainer learns from."""

    sample: RolloutSample
    verdict: Verdict

    @property
    def reward(self) -> float:
        return self.verdict.reward


def join_verdicts(samples: list[RolloutSample], verdicts: list[Verdict]) -> list[ScoredSample]:
    """Join samples with their verdicts by key; every sample must have exactly one verdict."""
    by_key = {v.key: v for v in verdicts}
    if len(by_key) != len(verdicts):
        raise ValueError("duplicate verdicts for the same (step, prompt_id, sample_index)")
    missing = [s.key for s in samples if s.key not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} samples have no verdict, e.g. {missing[0]}")
    return [ScoredSample(sample=s, verdict=by_key[s.key]) for s in samples]
