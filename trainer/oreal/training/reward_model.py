"""The token-level reward model (OREAL §2.4): a copy of the policy with a scalar head.

The backbone is the policy's transformer without its LM head; the head is a zero-initialised
`Linear(hidden, 1, bias=False)`, so at the start every token score w_t is exactly 0 (σ = 1/2, ω± = 0).
Scores are read at the same positions as the policy's log-probs: the hidden state that predicts
response token t scores token t. Saved as a Hugging Face backbone directory (config +
safetensors) plus `reward_head.safetensors`; `oreal reward-model fit` adds the tokenizer files and
`reward_model.json` (what it was fitted on). Such a folder is what `spec.model.tokenRewardModel` names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel

from oreal.training.models import quiet_transformers

HEAD_FILE = "reward_head.safetensors"


class TokenRewardModel(nn.Module):
    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = int(backbone.config.hidden_size)
        self.head = nn.Linear(hidden, 1, bias=False, dtype=next(backbone.parameters()).dtype)
        nn.init.zeros_(self.head.weight)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, response_index: torch.Tensor) -> torch.Tensor:
        """Token scores w_t: [B, R] fp32, read at `response_index` (a right-padded TokenBatch's columns).

        Like the policy, the backbone runs with no attention mask on right-padded rows (see logprobs.py).
        """
        hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
        h = hidden.gather(1, response_index[..., None].expand(-1, -1, hidden.shape[-1]))
        return self.head(h).squeeze(-1).float()

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype, device: torch.device) -> TokenRewardModel:
        """Backbone from a policy (CausalLM) or a saved reward model; head from HEAD_FILE if present."""
        quiet_transformers()
        backbone = AutoModel.from_pretrained(str(path), dtype=dtype)
        backbone.config.use_cache = False
        model = cls(backbone)
        head = Path(path) / HEAD_FILE
        if head.is_file():
            weight = load_file(str(head))["weight"]
            if tuple(weight.shape) != tuple(model.head.weight.shape):
                raise ValueError(
                    f"{head}: a reward head of shape {list(weight.shape)} does not fit this backbone "
                    f"(hidden size {model.head.weight.shape[1]}): it belongs to a model of another shape"
                )
            model.head.weight.data.copy_(weight.to(dtype))
        return model.to(device)

    def load_weights(self, directory: str | Path) -> None:
        """Backbone and head from a folder that `save_pretrained` wrote for a model of this shape."""
        from oreal.training.checkpoint_folder import load_safetensors_dir, load_weights_into

        directory = Path(directory)
        load_weights_into(self, load_safetensors_dir(directory), prefix="backbone.")
        with torch.no_grad():
            self.head.weight.copy_(load_file(str(directory / HEAD_FILE))["weight"].to(self.head.weight.dtype))

    def save_pretrained(
        self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None
    ) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sd = state_dict if state_dict is not None else self.state_dict()
        backbone_sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        self.backbone.save_pretrained(str(directory), state_dict=backbone_sd)
        save_file({"weight": sd["head.weight"].detach().cpu().contiguous()}, str(directory / HEAD_FILE))


def vocabulary_fingerprint(model_dir: str | Path) -> tuple[int | None, str | None]:
    """(config.json's vocab_size, a digest of tokenizer.json's vocabulary and added tokens); None
    for what the folder does not have."""
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    size = json.loads(config.read_text()).get("vocab_size") if config.is_file() else None
    digest = None
    tokenizer = model_dir / "tokenizer.json"
    if tokenizer.is_file():
        data = json.loads(tokenizer.read_text())
        vocab = {"model": (data.get("model") or {}).get("vocab"), "added": data.get("added_tokens")}
        digest = hashlib.sha256(json.dumps(vocab, sort_keys=True).encode()).hexdigest()[:16]
    return size, digest


def vocabulary_mismatch(policy_dir: str | Path, reward_model_dir: str | Path) -> str | None:
    """Why a reward model cannot read the policy's token ids (None when it can, as far as the files
    tell: equal vocab_size, and equal tokenizer vocabularies where both folders have tokenizer.json)."""
    policy_size, policy_vocab = vocabulary_fingerprint(policy_dir)
    rm_size, rm_vocab = vocabulary_fingerprint(reward_model_dir)
    if policy_size is not None and rm_size is not None and policy_size != rm_size:
        return f"vocabulary of {rm_size} tokens, the policy has {policy_size}: another tokenizer"
    if policy_vocab is not None and rm_vocab is not None and policy_vocab != rm_vocab:
        return "its tokenizer.json differs from the policy's: another tokenizer"
    return None
