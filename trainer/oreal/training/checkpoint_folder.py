"""What a local checkpoint folder holds (before `oreal.bucket.checkpoints` uploads it): HF-format
weights, optimiser state (per engine), RNG state and step.

<dir>/policy/            HF format: config.json, *.safetensors, tokenizer files
<dir>/reward_model/      HF backbone + reward_head.safetensors (absent without a reward model)
<dir>/optimizer/policy/  torch: optimizer.pt; deepspeed: its own checkpoint (tag "state")
<dir>/optimizer/reward_model/
<dir>/rng/rank-<r>.pt    torch CPU/CUDA and Python RNG states of every rank
<dir>/trainer_state.json next step and world size
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

STATE_FILE = "trainer_state.json"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(directory: Path, rank: int) -> None:
    (directory / "rng").mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), directory / "rng" / f"rank-{rank}.pt")


def load_rng(directory: Path, rank: int) -> None:
    path = directory / "rng" / f"rank-{rank}.pt"
    if path.is_file():
        set_rng_state(torch.load(path, map_location="cpu", weights_only=False))


def write_state(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True, default=str))


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / STATE_FILE).read_text())


def link_tree(source: Path, target: Path) -> None:
    """Recreate the files of `source` under `target` as hard links (copies across filesystems).

    Safe because nothing rewrites a saved file in place: a new save replaces the whole folder.
    """
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def load_safetensors_dir(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of every *.safetensors shard in a directory (reward head file excluded)."""
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        if f.name != "reward_head.safetensors":
            tensors.update(load_file(str(f)))
    if not tensors:
        raise FileNotFoundError(f"no safetensors weights in {directory}")
    return tensors


def load_weights_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
    """Copy saved tensors into a module in place; only tied weights may be missing."""
    own = module.state_dict()
    loaded = set()
    with torch.no_grad():
        for name, value in tensors.items():
            key = prefix + name
            if key not in own:
                raise KeyError(f"checkpoint tensor {name!r} has no place in the model")
            own[key].copy_(value.to(own[key].dtype))
            loaded.add(key)
    missing = set(own) - loaded
    tied = {n for n in missing if "lm_head" in n or "embed_tokens" in n}
    if missing - tied - {"head.weight"}:
        raise KeyError(f"checkpoint is missing {sorted(missing - tied)[:5]}")
