"""Generation engines behind one interface: `hf` (transformers) and `vllm` (vllm.LLM offline)."""

from oreal.engines.base import (
    Generation,
    GenerationEngine,
    SamplingOptions,
    make_generation_engine,
    sample_seed,
)

__all__ = ["GenerationEngine", "Generation", "SamplingOptions", "make_generation_engine", "sample_seed"]
