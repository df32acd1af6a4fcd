"""The engine interface shared by the rollout worker and `oreal eval`.

An engine loads a policy folder (HF safetensors + tokenizer), then turns prompt token ids into
sampled responses. Every response is sampled with its own seed, derived from
(run seed, step, prompt id, sample index), so a restarted worker regenerates exactly the same
tokens regardless of batch composition (up to the engine's numerical determinism).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from oreal.spec.models import RolloutSpec

GPU_MEMORY_UTILIZATION: float = RolloutSpec.model_fields["gpu_memory_utilization"].default  # the spec's


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling knobs; temperature 0 means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or negative: disabled
    max_new_tokens: int = 256

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Generation:
    """One sampled response. `logprobs[t]` is log pi(y_t | prefix) under the raw model (temperature 1)."""

    token_ids: list[int]
    text: str
    logprobs: list[float] = field(default_factory=list)
    truncated: bool = False


def sample_seed(seed: int, step: int, prompt_id: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on (seed, step, prompt id, sample index)."""
    key = f"{seed}/{step}/{prompt_id}/{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


class GenerationEngine(ABC):
    """Load a policy, then generate; `load` may be called again with new weights."""

    version: int | None = None

    @abstractmethod
    def load(self, policy_dir: Path, version: int | None = None) -> None:
        """Load (or reload) the policy weights from an HF-format folder."""

    @abstractmethod
    def generate(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingOptions
    ) -> list[Generation]:
        """One response per prompt row; `seeds[i]` seeds row i."""

    @property
    @abstractmethod
    def tokenizer(self):
        """The HF tokenizer of the loaded policy."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""


def make_generation_engine(
    name: str,
    batch_size: int = 16,
    gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
    seed: int = 0,
    dtype: str = "auto",
    max_model_len: int | None = None,
) -> GenerationEngine:
    """Build an engine by name (`hf` or `vllm`); heavy imports happen here, not at module import."""
    if name == "hf":
        from oreal.engines.hf import HFEngine

        return HFEngine(batch_size=batch_size, dtype=dtype)
    if name == "vllm":
        from oreal.engines.vllm import VLLMEngine

        return VLLMEngine(
            gpu_memory_utilization=gpu_memory_utilization, seed=seed, dtype=dtype, max_model_len=max_model_len
        )
    raise ValueError(f"unknown engine {name!r}; use hf or vllm")
