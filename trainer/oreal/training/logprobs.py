"""Batching prompt+response token ids and reading per-token log-probs of the response.

Layout of a micro-batch, L = P + R columns:

    [ pad .. pad  prompt tokens | response tokens  pad .. pad ]
      <---- P (left-padded) ---> <---- R (right-padded) ---->

Every response starts at column P, so the logits predicting response token t sit at column P + t - 1
for every row: columns P - 1 .. L - 2. Position ids
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


class _TokenLogProb(torch.autograd.Function):
    """log softmax(logits)[target], computed and differentiated a chunk of rows at a time in fp32.

    Saves only the (bf16 or fp32) logits, the targets and one fp32 logsumexp per row: no fp32 copy of
    the [N, V] logits survives to the backward pass, which matters with 150k-token vocabularies.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        out = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for i in range(0, logits.shape[0], chunk):
            block = logits[i : i + chunk].float()
            lse[i : i + chunk] = torch.logsumexp(block, dim=-1)
            out[i : i + chunk] = (
                block.gather(-1, targets[i : i + chunk, None]).squeeze(-1) - lse[i : i + chunk]
            )
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for i in range(0, logits.shape[0], ctx.chunk):
            g = grad_out[i : i + ctx.chunk, None].float()
            # d logp / d logits = onehot(target) - softmax(logits)
            block = -torch.exp(logits[i : i + ctx.chunk].float() - lse[i : i + ctx.chunk, None]) * g
            block.scatter_add_(-1, targets[i : i + ctx.chunk, None], g)
            grad[i : i + ctx.chunk] = block.to(grad.dtype)
        return grad, None, None


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log softmax(logits)[target] in fp32, memory-lean (see _TokenLogProb).  [B, R, V] -> [B, R]."""
    b, r, v = logits.shape
    flat = _TokenLogProb.apply(logits.reshape(b * r, v), targets.reshape(b * r), chunk)
    return flat.view(b, r)


def response_logprobs(model, batch: TokenBatch) -> torch.Tensor:
    """log π(y_t | x, y_<t) for every response position of a causal LM (or a DeepSpeed engine around one).

    Only the R positions that predict response tokens go through the LM head (an index tensor as
    `logits_to_keep`), so the [B, R, V] logits come out contiguous and nothing else is projected.
    """
    length = batch.input_ids.shape[1]
    keep = torch.arange(length - batch.num_response - 1, length - 1, device=batch.input_ids.device)
    out = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False)
    return gather_logprobs(out.logits, batch.response_ids)
