"""The hf engine: per-row seeded sampling, log-probs, truncation, top-k/top-p filtering."""

from __future__ import annotations

import pytest
import torch

from oreal.engines import SamplingOptions, sample_seed
from oreal.engines.hf import HFEngine, filter_logits

pytestmark = pytest.mark.numerics  # log-probs compared with tolerances


@pytest.fixture(scope="module")
def engine(tiny_model):
    e = HFEngine(batch_size=4, dtype="float32")  # not auto: bf16 on some CPUs only
    e.load(tiny_model, version=0)
    return e


def _ids(engine, question):
    tok = engine.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return tok(text, add_special_tokens=False)["input_ids"]


def test_sample_seed_depends_on_every_part_of_the_key():
    base = sample_seed(1, 2, "p", 3)
    assert base == sample_seed(1, 2, "p", 3)
    assert (
        len(
            {
                base,
                sample_seed(0, 2, "p", 3),
                sample_seed(1, 1, "p", 3),
                sample_seed(1, 2, "q", 3),
                sample_seed(1, 2, "p", 4),
            }
        )
        == 5
    )


def test_a_row_samples_the_same_tokens_whatever_its_batch(engine):
    sampling = SamplingOptions(temperature=1.0, max_new_tokens=16)
    rows = [_ids(engine, "What is 1 + 2?"), _ids(engine, "What is 3 + 3?"), _ids(engine, "What is 4 + 0?")]
    seeds = [11, 22, 33]
    together = engine.generate(rows, seeds, sampling)
    alone = [engine.generate([r], [s], sampling)[0] for r, s in zip(rows, seeds, strict=True)]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    other_seed = engine.generate(rows[:1] * 4, [1, 2, 3, 4], sampling)
    assert len({tuple(g.token_ids) for g in other_seed}) > 1  # different seeds, different samples


def test_logprobs_are_the_raw_model_log_probs_of_the_sampled_tokens(engine):
    prompt = _ids(engine, "What is 2 + 2?")
    (gen,) = engine.generate([prompt], [5], SamplingOptions(temperature=0.8, max_new_tokens=12))
    assert len(gen.logprobs) == len(gen.token_ids) > 0
    full = torch.tensor([prompt + gen.token_ids])
    with torch.no_grad():
        logits = engine.model(full).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = [logp[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(gen.token_ids)]
    assert gen.logprobs == pytest.approx(expected, abs=1e-4)


def test_greedy_matches_transformers_greedy(engine):
    prompt = _ids(engine, "What is 0 + 3?")
    (gen,) = engine.generate([prompt], [0], SamplingOptions(temperature=0.0, max_new_tokens=10))
    with torch.no_grad():
        ref = engine.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=10)[
            0, len(prompt) :
        ]
    assert gen.token_ids == ref.tolist()[: len(gen.token_ids)]


def test_truncation_flag_and_stop_token(engine):
    prompt = _ids(engine, "What is 1 + 1?")
    short = engine.generate([prompt] * 4, [1, 2, 3, 4], SamplingOptions(temperature=1.0, max_new_tokens=3))
    assert all(g.truncated and len(g.token_ids) == 3 for g in short)
    long = engine.generate([prompt] * 4, [1, 2, 3, 4], SamplingOptions(temperature=0.5, max_new_tokens=40))
    stops = engine.stop_ids()
    for g in long:
        assert g.truncated == (g.token_ids[-1] not in stops)
        assert not any(t in stops for t in g.token_ids[:-1])


def test_filter_logits_keeps_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)).tolist() == [[False, False, True, True]]
    # top-p 0.7: 0.5 alone is below 0.7, so 0.3 stays; 0.15 starts beyond the nucleus.
    assert torch.isinf(filter_logits(logits, 0, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, 0, 0.1)).tolist() == [[False, True, True, True]]


def test_generate_before_load_is_an_error():
    with pytest.raises(RuntimeError, match="before load"):
        HFEngine().generate([[1]], [0], SamplingOptions())


def test_reload_in_place_matches_a_fresh_load(tmp_path, tiny_model):
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "v1"
    shutil.copytree(tiny_model, other)
    tensors = load_file(str(other / "model.safetensors"))
    save_file(
        {k: v * 1.5 for k, v in tensors.items()}, str(other / "model.safetensors"), metadata={"format": "pt"}
    )
    engine = HFEngine(batch_size=2, dtype="float32")
    engine.load(tiny_model, 0)
    model = engine.model
    engine.load(other, 1)
    assert engine.model is model and engine.version == 1  # same module, new weights
    fresh = HFEngine(batch_size=2, dtype="float32")
    fresh.load(other, 1)
    for name, value in fresh.model.state_dict().items():
        assert torch.equal(engine.model.state_dict()[name], value), name
