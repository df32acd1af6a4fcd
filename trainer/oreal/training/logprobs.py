"""Batching prompt+response token ids and reading per-token log-probs of the response.

Layout of a micro-batch, L = P + R columns:

    [ pad .. pad  prompt tokens | response tokens  pad .. pad ]
      <---- P (left-padded) ---> <---- R (right-padded) ---->

Every response starts at column P, so the logits predicting response token t sit at column P + t - 1
for every row: the last R + 1 positions minus the final one (`logits_to_keep = R + 1`). Position ids
count real tokens only, so left padding does not shift positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    response_mask: torch.Tensor  # [B, R], 1 on real response tokens
    num_response: int  # R

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, -self.num_response :]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


def collate(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    device: torch.device,
    pad_id: int = 0,
) -> TokenBatch:
    if len(prompts) != len(responses) or not prompts:
        raise ValueError("need the same positive number of prompts and responses")
    p_len = max(1, max(len(p) for p in prompts))
    r_len = max(1, max(len(r) for r in responses))
    b = len(prompts)
    ids = torch.full((b, p_len + r_len), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p_len + r_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if p:
            ids[i, p_len - len(p) : p_len] = torch.tensor(list(p), dtype=torch.long)
            attn[i, p_len - len(p) : p_len] = 1
        if r:
            ids[i, p_len : p_len + len(r)] = torch.tensor(list(r), dtype=torch.long)
            attn[i, p_len : p_len + len(r)] = 1
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    resp_mask = attn[:, p_len:].clone()
    return TokenBatch(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=positions.to(device),
        response_mask=resp_mask.to(device),
        num_response=r_len,
    )


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] in fp32 without materialising the full log-softmax.  [B, R, V] -> [B, R]."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def response_logprobs(model, batch: TokenBatch) -> torch.Tensor:
    """log π(y_t | x, y_<t) for every response position of a causal LM (or a DeepSpeed engine around one)."""
    out = model(**batch.model_inputs(), logits_to_keep=batch.num_response + 1, use_cache=False)
    logits = out.logits[:, :-1]
    return gather_logprobs(logits, batch.response_ids)
