"""Generation with vLLM's offline `vllm.LLM` API.

The engine is built once, on the first policy. Later versions are loaded in place with the
workers' `reload_weights(weights_path=...)` (vLLM v1), so the engine, its compiled graphs and
its KV-cache allocation survive a policy update; the prefix cache is reset because cached keys
and values belong to the old weights. Each request carries its own seed, so a sample depends
only on (seed, step, prompt, sample index), as with the hf engine. vLLM returns raw log-probs
(`logprobs_mode="raw_logprobs"`, its default), the same quantity the hf engine records.
"""

from __future__ import annotations

import logging
from pathlib import Path

from oreal.engines.base import GPU_MEMORY_UTILIZATION, Generation, GenerationEngine, SamplingOptions

log = logging.getLogger(__name__)


class VLLMEngine(GenerationEngine):
    def __init__(
        self,
        gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
        seed: int = 0,
        dtype: str = "auto",
        max_model_len: int | None = None,
        **engine_kwargs,
    ) -> None:
        self.gpu_memory_utilization = gpu_memory_utilization
        self.seed = seed
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.engine_kwargs = engine_kwargs
        self.llm = None
        self._tokenizer = None
        self.version = None
        self.reloads = 0

    @property
    def tokenizer(self):
        return self._tokenizer

    def load(self, policy_dir: Path, version: int | None = None) -> None:
        if self.llm is None:
            from vllm import LLM

            self.llm = LLM(
                model=str(policy_dir),
                dtype=self.dtype,
                seed=self.seed,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                enable_prefix_caching=True,
                **self.engine_kwargs,
            )
            self._tokenizer = self.llm.get_tokenizer()
        else:
            # In-place weight reload (vLLM v1 worker API): no engine restart.
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(policy_dir)})
            self.llm.reset_prefix_cache()
            self.reloads += 1
        self.version = version

    def generate(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingOptions
    ) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self.llm is None:
            raise RuntimeError("VLLMEngine.generate called before load()")
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt row is required")
        params = [
            SamplingParams(
                n=1,
                temperature=max(0.0, sampling.temperature),
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else 0,
                max_tokens=sampling.max_new_tokens,
                seed=seed % (2**63),
                logprobs=0,  # the sampled token's log-prob only
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False
        )
        results = []
        for out in outputs:
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            logprobs = []
            for position, token in zip(completion.logprobs or [], token_ids, strict=False):
                logprobs.append(float(position[token].logprob))
            results.append(
                Generation(
                    token_ids=token_ids,
                    text=completion.text,
                    logprobs=logprobs,
                    truncated=completion.finish_reason == "length",
                )
            )
        return results

    def close(self) -> None:
        self.llm = None
