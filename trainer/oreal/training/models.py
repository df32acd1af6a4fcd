"""Loading the three networks: policy, frozen reference, and the token-level reward model."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel

# Tokenizer and generation files copied next to saved policy weights so rollout engines can load them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
)


def quiet_transformers() -> None:
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_causal_lm(path: str | Path, dtype: torch.dtype, device: torch.device) -> PreTrainedModel:
    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.config.use_cache = False
    return model.to(device)


def load_reference(path: str | Path, dtype: torch.dtype, device: torch.device) -> PreTrainedModel:
    """The frozen KL reference: eval mode, no gradients."""
    model = load_causal_lm(path, dtype, device)
    model.eval()
    model.requires_grad_(False)
    return model


def copy_tokenizer_files(source: str | Path, destination: str | Path) -> list[str]:
    """Copy whatever tokenizer/generation files `source` has into `destination`; returns their names."""
    src, dst = Path(source), Path(destination)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def compile_decoder_layers(model: torch.nn.Module) -> int:
    """torch.compile each decoder layer in place (dynamic shapes: micro-batches differ in length).

    The layers share one compiled graph; the embedding and the LM head stay eager (the log-softmax
    kernels of logprobs.py are compiled separately, `response_logprobs(..., compiled=True)`).
    Returns the number of layers compiled.
    """
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith("DecoderLayer"):
            module.compile(dynamic=True)
            count += 1
    return count


def enable_activation_checkpointing(model) -> None:
    """Recompute decoder-layer activations in backward (non-reentrant), across transformers versions."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
