"""Prompt data: loading (JSONL/Parquet via fsspec), templates, per-step selection and sharding."""

from oreal.data.prompts import DataError, load_prompts
from oreal.data.selection import shard, step_prompts
from oreal.data.templates import encode_prompt, render_prompt

__all__ = ["DataError", "encode_prompt", "load_prompts", "render_prompt", "shard", "step_prompts"]
