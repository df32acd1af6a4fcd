"""`oreal reward-model fit`: reading scored samples, balancing and splitting them, the AUC, the fit
itself (files, exact resume, refusals) and the command's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from oreal.cli import main as oreal_main
from oreal.training import rm_fit
from oreal.training.reward_model import HEAD_FILE, TokenRewardModel
from oreal.training.rm_fit import FitConfig, FitError, FitSample

CHARS = list("0123456789+-=,. ")


def char_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *CHARS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def char_policy(path: Path, hidden: int = 16, extra_vocab: int = 0) -> Path:
    """A tiny Llama over the character vocabulary, saved with its tokenizer."""
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + extra_vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return char_policy(tmp_path_factory.mktemp("fit") / "policy")


def samples(n_prompts: int = 12, per_prompt: int = 4) -> list[FitSample]:
    """Arithmetic-looking samples; half of each prompt's answers are correct."""
    tok = char_tokenizer()
    out = []
    for p in range(n_prompts):
        prompt = [1] + tok(f"{p}+{p}=", add_special_tokens=False)["input_ids"]
        for i in range(per_prompt):
            text = f"{2 * p + (i % 2)}"
            response = tok(text, add_special_tokens=False)["input_ids"] + [2]
            out.append(FitSample(prompt, response, i % 2 == 0, f"p{p}", text))
    return out


def test_roc_auc_by_hand_with_ties():
    assert rm_fit.roc_auc([0.1, 0.4, 0.35, 0.8], [False, True, False, True]) == 1.0
    # positives {0.5, 0.9} vs negatives {0.5, 0.2}: pairs 1/2 (tie) + 1 + 1 + 1 = 3.5 of 4
    assert rm_fit.roc_auc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == 0.875
    assert rm_fit.roc_auc([0.3, 0.1], [False, True]) == 0.0
    assert rm_fit.roc_auc([0.3, 0.1], [True, True]) != rm_fit.roc_auc([0.3, 0.1], [True, True])  # NaN


def test_balance_pairs_and_split_by_prompt():
    data = [
        FitSample([1], [2], c, g)
        for g, outcomes in (("a", [1, 1, 1, 0]), ("b", [1, 1]), ("c", [0, 1, 0, 0, 1]))
        for c in map(bool, outcomes)
    ]
    kept = rm_fit.balance_pairs(data, seed=0)
    by_group = {g: sorted(s.correct for s in kept if s.group == g) for g in "abc"}
    assert by_group == {"a": [False, True], "b": [], "c": [False, False, True, True]}
    many = [FitSample([1], [2], i % 2 == 0, f"g{i // 4}") for i in range(400)]
    train, test = rm_fit.split_by_prompt(many, 0.25, seed=1)
    assert {s.group for s in train}.isdisjoint({s.group for s in test})
    assert len(train) + len(test) == 400 and 40 <= len(test) <= 160


def test_read_jsonl_token_ids_text_and_errors(tmp_path):
    tok = char_tokenizer()
    good = tmp_path / "good.jsonl"
    rows = [
        {"prompt_token_ids": [1, 5], "response_token_ids": [6, 2], "reward": -1, "prompt_id": "x"},
        {"prompt": "1+1=", "response": "2", "correct": True},
        {"prompt": "1+1=", "response": "3", "correct": False, "truncated": True},
    ]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b, c = rm_fit.read_jsonl(good, tok)
    assert (a.prompt_ids, a.response_ids, a.correct, a.group) == ([1, 5], [6, 2], False, "x")
    assert b.correct and b.response_ids == tok("2", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id
    ]
    assert c.response_ids == tok("3", add_special_tokens=False)["input_ids"] and b.group == c.group == "1+1="
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "1=", "response": "1"}) + "\n")
    with pytest.raises(FitError, match=r"bad.jsonl line 2: not a scored sample \(missing field 'reward'\)"):
        rm_fit.read_jsonl(bad, tok)
    bad.write_bytes(
        json.dumps(rows[0]).encode() + b"\n\xff\xfe\n"
    )  # a line that is not UTF-8: one line, no traceback
    with pytest.raises(FitError, match="bad.jsonl line 2: not UTF-8 text"):
        rm_fit.read_jsonl(bad, tok)


def test_check_tokenizer_refuses_samples_of_another_tokenizer():
    tok = char_tokenizer()
    ok = samples(2)
    rm_fit.check_tokenizer(ok, tok, len(tok), "data")
    beyond = [FitSample([1], [len(tok) + 3], True, "g")]
    with pytest.raises(FitError, match="beyond the policy's vocabulary"):
        rm_fit.check_tokenizer(beyond, tok, len(tok), "data")
    shifted = [
        FitSample(s.prompt_ids, [t + 1 for t in s.response_ids], s.correct, s.group, s.response_text)
        for s in ok
    ]
    with pytest.raises(FitError, match="do not decode to their text"):
        rm_fit.check_tokenizer(shifted, tok, len(tok), "data")


CFG = FitConfig(epochs=2, lr=1e-2, batch_size=8, micro_batch_size=3, held_out=0.25, save_every=1)


def test_fit_writes_a_reward_model_the_trainer_can_load(policy, tmp_path):
    out = tmp_path / "rm"
    summary = rm_fit.fit(policy, samples(), out, CFG)
    for name in (HEAD_FILE, "config.json", "tokenizer.json", rm_fit.SUMMARY_FILE):
        assert (out / name).is_file(), name
    assert not (out / rm_fit.STATE_DIR).exists()
    assert summary["steps"] == 2 * -(-summary["train_samples"] // 8)
    assert len(summary["history"]) == 2 and 0.0 <= summary["held_out"]["auc"] <= 1.0
    head = load_file(str(out / HEAD_FILE))["weight"]
    assert head.abs().sum() > 0  # trained away from the zero initialisation
    rm = TokenRewardModel.from_pretrained(out, torch.float32, torch.device("cpu"))
    assert torch.equal(rm.head.weight.detach(), head)
    again = rm_fit.fit(policy, samples(), out, CFG)  # same data and settings: nothing to do
    assert again["already_fitted"]
    with pytest.raises(FitError, match="other data or settings"):
        rm_fit.fit(policy, samples(10), out, CFG)


class Stop(Exception):
    pass


def test_an_interrupted_fit_resumes_to_the_same_weights(policy, tmp_path):
    straight = tmp_path / "straight"
    rm_fit.fit(policy, samples(), straight, CFG)

    def stop_at_3(done, total, info):
        if done == 3:
            raise Stop

    resumed = tmp_path / "resumed"
    with pytest.raises(Stop):
        rm_fit.fit(policy, samples(), resumed, CFG, progress=stop_at_3)
    state = json.loads((resumed / rm_fit.STATE_DIR / "state.json").read_text())
    assert state["step"] == 3 and not (resumed / rm_fit.SUMMARY_FILE).exists()
    seen = []
    rm_fit.fit(policy, samples(), resumed, CFG, progress=lambda done, total, info: seen.append(done))
    assert seen[0] == 4  # continued after the saved step
    a = TokenRewardModel.from_pretrained(straight, torch.float32, torch.device("cpu")).state_dict()
    b = TokenRewardModel.from_pretrained(resumed, torch.float32, torch.device("cpu")).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_state_of_another_shape_or_other_data(policy, tmp_path):
    out = tmp_path / "rm"
    with pytest.raises(Stop):
        rm_fit.fit(policy, samples(), out, CFG, progress=lambda done, *_: (_ for _ in ()).throw(Stop))
    wider = char_policy(tmp_path / "wider", hidden=32)
    with pytest.raises(FitError, match="another shape"):
        rm_fit.fit(wider, samples(), out, CFG)
    with pytest.raises(FitError, match="other data"):
        rm_fit.fit(policy, samples(10), out, CFG)
    rm_fit.fit(wider, samples(), out, CFG, restart=True)  # --restart starts over
    assert (out / rm_fit.SUMMARY_FILE).is_file()


def write_jsonl(path: Path, rows: list[FitSample]) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "prompt_id": s.group,
                    "prompt_token_ids": s.prompt_ids,
                    "response_token_ids": s.response_ids,
                    "response_text": s.response_text,
                    "correct": s.correct,
                }
            )
            + "\n"
            for s in rows
        )
    )
    return path


def fit_cli(*args: str) -> int:
    return oreal_main(["reward-model", "fit", "--device", "cpu", "--epochs", "1", "--batch-size", "8", *args])


def test_command_fits_and_names_its_output(policy, tmp_path, capsys):
    data = write_jsonl(tmp_path / "scored.jsonl", samples())
    out = tmp_path / "rm"
    assert fit_cli("--policy", str(policy), "--data", str(data), "--out", str(out), "--held-out", "0.25") == 0
    assert "held-out AUC" in capsys.readouterr().out
    assert json.loads((out / rm_fit.SUMMARY_FILE).read_text())["samples"] == len(samples())


def test_command_errors_are_one_line(policy, tmp_path, capsys):
    shifted = [
        FitSample(s.prompt_ids, [t + 1 for t in s.response_ids], s.correct, s.group, s.response_text)
        for s in samples()
    ]
    data = write_jsonl(tmp_path / "other-tokenizer.jsonl", shifted)
    assert fit_cli("--policy", str(policy), "--data", str(data), "--out", str(tmp_path / "a")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("oreal reward-model fit: ") and "another tokenizer" in err and "\n" not in err

    other_vocab = char_policy(tmp_path / "other-vocab", extra_vocab=5)
    data = write_jsonl(tmp_path / "scored.jsonl", samples())
    args = ("--policy", str(policy), "--data", str(data), "--out", str(tmp_path / "b"))
    assert fit_cli(*args, "--init", str(other_vocab)) == 1
    err = capsys.readouterr().err.strip()
    assert "--init" in err and "another tokenizer" in err and "\n" not in err

    assert (
        fit_cli("--policy", str(tmp_path / "nowhere"), "--data", str(data), "--out", str(tmp_path / "c")) == 1
    )
    assert "not a model folder" in capsys.readouterr().err


def test_read_bucket_joins_committed_rollouts_with_their_verdicts(tmp_path):
    from oreal.bucket import Bucket
    from oreal.trajectory import RolloutSample, Verdict

    bucket = Bucket.open(str(tmp_path / "run"))
    for step in range(3):
        rollouts = [
            RolloutSample(step, f"p{g}", i, "1+1=", [1, 5, 4, 5, 6], [6, 2], "2", "2", step)
            for g in range(2)
            for i in range(2)
        ]
        bucket.write_rollout_part(step, 0, rollouts)
        bucket.commit_rollouts(step, 1)
        if step < 2:  # step 2 has no verdicts yet: it is not read
            verdicts = [
                Verdict(step, r.prompt_id, r.sample_index, r.sample_index == 0, "x") for r in rollouts
            ]
            bucket.write_verdict_part(step, 0, verdicts)
            bucket.commit_verdicts(step, 1)
    read = rm_fit.read_bucket(str(tmp_path / "run"))
    assert len(read) == 8 and sum(s.correct for s in read) == 4
    assert {s.group for s in read} == {"0/p0", "0/p1", "1/p0", "1/p1"}  # a prompt of one step is one group
    assert len(rm_fit.read_bucket(str(tmp_path / "run"), steps=range(1, 5))) == 4
    with pytest.raises(FitError, match="no committed step"):
        rm_fit.read_bucket(str(tmp_path / "empty"))
