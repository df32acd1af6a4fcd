"""Generation engines behind one interface: `hf` (transformers) and `vllm` (vllm.LLM offline)."""

from oreal.engines.base import Engine, Generation, SamplingOptions, make_engine, sample_seed

__all__ = ["Engine", "Generation", "SamplingOptions", "make_engine", "sample_seed"]
