"""Batching prompt+response token ids and reading per-token log-probs of the response.

Layout of a micro-batch: every row starts at column 0 and is right-padded,

    [ prompt tokens | response tokens | pad .. pad ]      L = max_i (P_i + R_i) columns

so no real token ever sees a pad under causal attention, and the model runs with no attention mask
and default position ids: SDPA then takes its `is_causal` fast path (FlashAttention / cuDNN) instead
of a masked kernel with a [B, 1, L, L] bias (on an H100, the masked kernel ran at ~100 TFLOP/s).
Pads only produce outputs that nobody reads.

Response token t of row i is predicted by the hidden state at column P_i - 1 + t (`response_index`).
When every prompt has the same length those columns are one contiguous block, so only that block
goes through the LM head; otherwise the LM head runs from the shortest prompt's last column and the
needed rows are gathered.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, L], right-padded
    response_ids: torch.Tensor  # [B, R], pad where the response is shorter
    response_mask: torch.Tensor  # [B, R], 1 on real response tokens
    response_index: torch.Tensor  # [B, R], column whose hidden state predicts response token t
    first_column: int  # min over rows of P_i - 1: the first column any response needs
    aligned: bool  # every row has the same prompt length: response_index[i] = first_column + t

    @property
    def num_response(self) -> int:
        return int(self.response_ids.shape[1])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """No attention mask and no position ids: right padding needs neither (see module docstring)."""
        return {"input_ids": self.input_ids}


def collate(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    device: torch.device,
    pad_id: int = 0,
) -> TokenBatch:
    if len(prompts) != len(responses) or not prompts:
        raise ValueError("need the same positive number of prompts and responses")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (it predicts the first response token)")
    b = len(prompts)
    length = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    r_len = max(1, max(len(r) for r in responses))
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    resp = torch.full((b, r_len), pad_id, dtype=torch.long)
    mask = torch.zeros((b, r_len), dtype=torch.long)
    starts = torch.tensor([len(p) - 1 for p in prompts], dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        row = torch.tensor(list(p) + list(r), dtype=torch.long)
        ids[i, : len(row)] = row
        if r:
            resp[i, : len(r)] = row[len(p) :]
            mask[i, : len(r)] = 1
    # Columns past a row's end (masked positions) are clamped to a valid column; their values are unused.
    index = (starts[:, None] + torch.arange(r_len)[None, :]).clamp(max=length - 1)
    first = int(starts.min())
    return TokenBatch(
        input_ids=ids.to(device),
        response_ids=resp.to(device),
        response_mask=mask.to(device),
        response_index=index.to(device),
        first_column=first,
        aligned=bool((starts == first).all()),
    )


def _forward_chunk(block: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log softmax(block)[target], logsumexp) per row, in fp32."""
    block = block.float()
    lse = torch.logsumexp(block, dim=-1)
    return block.gather(-1, targets[:, None]).squeeze(-1) - lse, lse


def _backward_chunk(
    block: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, grad_out: torch.Tensor
) -> torch.Tensor:
    """d/d logits of Σ g·logp = g · (onehot(target) - softmax(logits)), in the logits' dtype."""
    g = grad_out.float()[:, None]
    grad = -torch.exp(block.float() - lse[:, None]) * g
    grad.scatter_add_(-1, targets[:, None], g)
    return grad.to(block.dtype)


def _backward_chunk_pointwise(
    block: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, grad_out: torch.Tensor
) -> torch.Tensor:
    """The same gradient with the one-hot as a comparison, so torch.compile fuses it into one kernel."""
    g = grad_out.float()[:, None]
    onehot = torch.arange(block.shape[-1], device=block.device)[None, :] == targets[:, None]
    return ((onehot.float() - torch.exp(block.float() - lse[:, None])) * g).to(block.dtype)


@functools.cache
def _compiled_kernels():
    """The chunk functions torch.compile'd once per process (dynamic shapes): each becomes one fused
    kernel that reads the bf16 logits once or twice, where eager math takes ~10 fp32 passes."""
    return torch.compile(_forward_chunk, dynamic=True), torch.compile(_backward_chunk_pointwise, dynamic=True)


def _kernels(compiled: bool):
    return _compiled_kernels() if compiled else (_forward_chunk, _backward_chunk)


class _TokenLogProb(torch.autograd.Function):
    """log softmax(logits)[target], computed and differentiated a chunk of rows at a time in fp32.

    Saves only the (bf16 or fp32) logits, the targets and one fp32 logsumexp per row: no fp32 copy of
    the [N, V] logits survives to the backward pass, which matters with 150k-token vocabularies.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, chunk: int, compiled: bool) -> torch.Tensor:
        fwd, _ = _kernels(compiled)
        out = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for i in range(0, logits.shape[0], chunk):
            out[i : i + chunk], lse[i : i + chunk] = fwd(logits[i : i + chunk], targets[i : i + chunk])
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk, ctx.compiled = chunk, compiled
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        _, bwd = _kernels(ctx.compiled)
        grad = torch.empty_like(logits)
        c = ctx.chunk
        for i in range(0, logits.shape[0], c):
            grad[i : i + c] = bwd(logits[i : i + c], targets[i : i + c], lse[i : i + c], grad_out[i : i + c])
        return grad, None, None, None


def gather_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, chunk: int = 1024, compiled: bool = False
) -> torch.Tensor:
    """log softmax(logits)[target] in fp32, memory-lean (see _TokenLogProb).  [B, R, V] -> [B, R]."""
    b, r, v = logits.shape
    flat = _TokenLogProb.apply(logits.reshape(b * r, v), targets.reshape(b * r), chunk, compiled)
    return flat.view(b, r)


def response_logprobs(model, batch: TokenBatch, compiled: bool = False) -> torch.Tensor:
    """log π(y_t | x, y_<t) for every response position of a causal LM (or a DeepSpeed engine around one).

    Only columns from `batch.first_column` on go through the LM head (an index tensor as
    `logits_to_keep`); `compiled` selects the torch.compile'd log-softmax kernels.
    """
    length = batch.input_ids.shape[1]
    device = batch.input_ids.device
    if batch.aligned:
        keep = torch.arange(batch.first_column, batch.first_column + batch.num_response, device=device)
    else:
        keep = torch.arange(batch.first_column, length, device=device)
    logits = model(**batch.model_inputs(), logits_to_keep=keep, use_cache=False).logits
    if not batch.aligned:
        index = (batch.response_index - batch.first_column)[..., None].expand(-1, -1, logits.shape[-1])
        logits = logits.gather(1, index)
    return gather_logprobs(logits, batch.response_ids, compiled=compiled)
