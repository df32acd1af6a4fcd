"""Generation with transformers `generate`, batched, on CPU or GPU.

`generate` samples from one global RNG, which would make a row's tokens depend on its batch
neighbours. Instead we let `generate` run greedy decoding and do the sampling ourselves in a
logits processor: each row draws from its own `torch.Generator` seeded by `sample_seed(...)`, and
the processor returns a one-hot mask so greedy picks exactly the sampled token. The same
processor records log pi(y_t) of the raw model for every chosen token.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor

from oreal.dtypes import resolve_dtype
from oreal.engines.base import Generation, GenerationEngine, SamplingOptions


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask logits outside the top-k and the top-p nucleus with -inf. logits: (B, V)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches top_p (the first token always stays).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class PerRowSampler(LogitsProcessor):
    """Sample each row with its own generator; record the raw log-prob of each chosen token."""

    def __init__(self, seeds: list[int], sampling: SamplingOptions):
        self.seeds = seeds
        self.sampling = sampling
        self.generators: list[torch.Generator] | None = None
        self.logprobs: list[list[float]] = [[] for _ in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        raw = torch.log_softmax(scores, dim=-1)
        if self.sampling.greedy:
            chosen = scores.argmax(dim=-1)
        else:
            if self.generators is None:
                self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
            logits = filter_logits(
                scores / self.sampling.temperature, self.sampling.top_k, self.sampling.top_p
            )
            probs = torch.softmax(logits, dim=-1)
            chosen = torch.stack(
                [torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(self.generators)]
            )
        picked = raw.gather(-1, chosen[:, None])[:, 0].tolist()
        for row, value in enumerate(picked):
            self.logprobs[row].append(value)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(-1, chosen[:, None], 0.0)
        return forced


class HFEngine(GenerationEngine):
    """transformers engine; `batch_size` rows are decoded together (left padding)."""

    def __init__(self, batch_size: int = 16, device: str | None = None, dtype: str = "auto"):
        self.batch_size = max(1, batch_size)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype
        self.model = None
        self._tokenizer = None
        self.version = None

    @property
    def tokenizer(self):
        return self._tokenizer

    def torch_dtype(self) -> torch.dtype:
        """spec.model.dtype on this engine's device (`auto`: oreal.dtypes)."""
        return resolve_dtype(self.dtype, self.device)

    def load(self, policy_dir: Path, version: int | None = None) -> None:
        """First call: build the model. Later calls: copy the new weights into it in place."""
        policy_dir = Path(policy_dir)
        if self.model is not None and self._reload_in_place(policy_dir):
            self.version = version
            return
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=self.torch_dtype())
        self.model = model.to(self.device).eval()
        self.version = version

    @torch.inference_mode()
    def _reload_in_place(self, policy_dir: Path) -> bool:
        """Copy safetensors weights into the loaded model (same architecture); False if impossible."""
        from safetensors.torch import load_file

        files = sorted(policy_dir.glob("*.safetensors"))
        if not files:
            return False
        own = self.model.state_dict()
        loaded: set[str] = set()
        for f in files:
            for name, tensor in load_file(str(f)).items():
                if name not in own or own[name].shape != tensor.shape:
                    return False
                own[name].copy_(tensor)
                loaded.add(name)
        missing = {n for n in own if n not in loaded}
        tied = self.model.config.tie_word_embeddings and missing <= {"lm_head.weight"}
        return not missing or tied

    def stop_ids(self) -> set[int]:
        ids = {self._tokenizer.eos_token_id}
        configured = self.model.generation_config.eos_token_id
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        return {i for i in ids if i is not None}

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingOptions
    ) -> list[Generation]:
        if self.model is None:
            raise RuntimeError("HFEngine.generate called before load()")
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt row is required")
        results: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            results.extend(
                self._generate_batch(
                    prompts[start : start + self.batch_size], seeds[start : start + self.batch_size], sampling
                )
            )
        return results

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], sampling: SamplingOptions):
        pad_id = self._tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self._tokenizer.eos_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding keeps every prompt's end aligned
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        stops = self.stop_ids()
        sampler = PerRowSampler(seeds, sampling)
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=sorted(stops),
        )
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            generation_config=config,
            logits_processor=[sampler],
        )
        generations = []
        for row in range(len(prompts)):
            tokens = output[row, width:].tolist()
            end = next((i for i, t in enumerate(tokens) if t in stops), None)
            truncated = end is None
            tokens = (
                tokens if truncated else tokens[: end + 1]
            )  # keep the stop token: the policy learns to stop
            text = self._tokenizer.decode(tokens, skip_special_tokens=True)
            generations.append(Generation(tokens, text, sampler.logprobs[row][: len(tokens)], truncated))
        return generations
