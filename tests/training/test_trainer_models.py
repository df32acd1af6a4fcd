"""Log-probs under padding, and the token-level reward model's head and positions."""

import pytest
import torch

from oreal.algorithm import token_weights
from oreal.training.logprobs import collate, gather_logprobs, response_logprobs
from oreal.training.models import load_causal_lm
from oreal.training.reward_model import HEAD_FILE, TokenRewardModel

CPU = torch.device("cpu")
PROMPTS = [[5, 6, 7], [9], [3, 4, 5, 6, 7, 8]]
RESPONSES = [[10, 11], [12, 13, 14, 15, 16], [17]]


def unpadded_logprobs(model, prompt, response):
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1)


EQUAL_PROMPTS = [[5, 6, 7], [9, 8, 7], [1, 2, 3]]
EQUAL_RESPONSES = [[10, 11], [12, 13, 14, 15, 16], []]


@pytest.mark.parametrize("arch", ["tiny_qwen", "tiny_llama"])
@pytest.mark.parametrize(
    ("prompts", "responses", "aligned"),
    [(PROMPTS, RESPONSES, False), (EQUAL_PROMPTS, EQUAL_RESPONSES, True)],
    ids=["gathered-columns", "contiguous-columns"],
)
def test_padded_batch_logprobs_equal_unpadded(arch, prompts, responses, aligned, request):
    model = load_causal_lm(request.getfixturevalue(arch), torch.float32, CPU).eval()
    batch = collate(prompts, responses, CPU, pad_id=63)
    assert batch.aligned == aligned
    assert batch.response_mask.tolist() == [[1] * len(r) + [0] * (5 - len(r)) for r in responses]
    with torch.no_grad():
        logp = response_logprobs(model, batch)
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            if r:
                assert torch.allclose(logp[i, : len(r)], unpadded_logprobs(model, p, r), atol=1e-5), i


def test_collate_right_pads_rows_and_indexes_the_predicting_columns():
    batch = collate(PROMPTS, RESPONSES, CPU, pad_id=63)
    assert batch.input_ids.tolist() == [
        [5, 6, 7, 10, 11, 63, 63],
        [9, 12, 13, 14, 15, 16, 63],
        [3, 4, 5, 6, 7, 8, 17],
    ]
    assert batch.model_inputs().keys() == {"input_ids"}  # no mask: right pads are never attended to
    assert batch.response_ids.tolist() == [[10, 11, 63, 63, 63], [12, 13, 14, 15, 16], [17, 63, 63, 63, 63]]
    # response token t of row i is predicted at column P_i - 1 + t (clamped where masked)
    assert batch.response_index.tolist() == [[2, 3, 4, 5, 6], [0, 1, 2, 3, 4], [5, 6, 6, 6, 6]]
    assert batch.first_column == 0 and not batch.aligned
    same = collate([[1, 2], [3, 4]], [[5], [6, 7, 8]], CPU)
    assert same.aligned and same.first_column == 1 and same.response_index.tolist() == [[1, 2, 3], [1, 2, 3]]
    with pytest.raises(ValueError, match="at least one token"):
        collate([[1], []], [[2], [3]], CPU)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "compiled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"]
)
def test_gather_logprobs_values_and_gradients_match_log_softmax(dtype, compiled):
    """Eager chunks and trainer.compile's fused kernels both equal log_softmax + gather."""
    torch.manual_seed(0)
    logits = (torch.randn(2, 5, 11) * 3).to(dtype)
    targets = torch.randint(0, 11, (2, 5))
    weights = torch.randn(2, 5)
    a = logits.clone().requires_grad_(True)
    ref = torch.log_softmax(a.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    (ref * weights).sum().backward()
    b = logits.clone().requires_grad_(True)
    out = gather_logprobs(b, targets, chunk=3, compiled=compiled)  # chunks that do not divide the 10 rows
    (out * weights).sum().backward()
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-5)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert b.grad.dtype == dtype and torch.allclose(b.grad.float(), a.grad.float(), atol=tol)


def test_zero_head_gives_zero_scores_and_zero_weights(tiny_qwen):
    rm = TokenRewardModel.from_pretrained(tiny_qwen, torch.float32, CPU)
    assert rm.head.bias is None and rm.head.weight.abs().sum() == 0
    batch = collate(PROMPTS, RESPONSES, CPU)
    scores = rm(batch.input_ids, batch.response_index)
    assert scores.shape == (3, 5) and scores.abs().sum() == 0
    pos, neg = token_weights(scores, batch.response_mask)
    assert pos.abs().sum() == 0 and neg.abs().sum() == 0


def test_reward_scores_read_at_policy_logprob_positions_and_round_trip(tiny_qwen, tmp_path):
    rm = TokenRewardModel.from_pretrained(tiny_qwen, torch.float32, CPU)
    torch.manual_seed(0)
    rm.head.weight.data.normal_()
    batch = collate(PROMPTS, RESPONSES, CPU)
    with torch.no_grad():
        scores = rm(batch.input_ids, batch.response_index)
        # unpadded: the hidden state at prompt_len - 1 + t scores response token t
        for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
            hidden = rm.backbone(input_ids=torch.tensor([p + r])).last_hidden_state[0]
            expected = rm.head(hidden[len(p) - 1 : len(p) - 1 + len(r)]).squeeze(-1)
            assert torch.allclose(scores[i, : len(r)], expected, atol=1e-5)
        rm.save_pretrained(tmp_path / "rm")
        assert (tmp_path / "rm" / HEAD_FILE).is_file() and (tmp_path / "rm" / "config.json").is_file()
        again = TokenRewardModel.from_pretrained(tmp_path / "rm", torch.float32, CPU)
        assert torch.equal(again(batch.input_ids, batch.response_index), scores)
