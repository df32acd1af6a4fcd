"""The token-level reward model (OREAL §2.4): a copy of the policy with a scalar head.

The backbone is the policy's transformer without its LM head; the head is a zero-initialised
`Linear(hidden, 1, bias=False)`, so at the start every token score w_t is exactly 0 (σ = 1/2, ω± = 0).
Scores are read at the same positions as the policy's log-probs: the hidden state that predicts
response token t scores token t. Saved as a Hugging Face backbone directory (config +
safetensors) plus `reward_head.safetensors`.
"""

from __future__ import annotations

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
            model.head.weight.data.copy_(load_file(str(head))["weight"].to(dtype))
        return model.to(device)

    def save_pretrained(
        self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None
    ) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sd = state_dict if state_dict is not None else self.state_dict()
        backbone_sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        self.backbone.save_pretrained(str(directory), state_dict=backbone_sd)
        save_file({"weight": sd["head.weight"].detach().cpu().contiguous()}, str(directory / HEAD_FILE))
