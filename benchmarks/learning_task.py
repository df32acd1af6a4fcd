"""The synthetic tasks, the tiny model and its SFT warm start for the learning benchmark.

Task ``chain`` (the default): chained integer arithmetic such as ``23+58-17=``. The worked
solution writes each intermediate result and then the boxed answer::

    23+58=81, 81-17=64. \\boxed{64}

so a wrong answer is usually caused by one wrong intermediate token; that is what OREAL's token
weights (paper Sec. 3.3) should learn to find. Spotting it means re-doing the arithmetic.

Task ``sort``: sort the digits of the prompt, e.g. ``739147=``; the solution lists them in order
and boxes the sorted number::

    1,3,4,7,7,9. \\boxed{134779}

Here an error (a digit out of order, dropped or repeated, a boxed copy that differs from the list)
is visible in the written tokens themselves, checkable against the prompt without computing.

The model is a small ``LlamaForCausalLM`` over a character vocabulary, saved as an ordinary HF
folder (config, safetensors, tokenizer) so that the trainer loads it exactly like a real policy.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from oreal.trajectory import Prompt

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARACTERS = list("0123456789+-=,. }")
BOXED = "\\boxed{"


@dataclass(frozen=True)
class TaskConfig:
    """Shape of the problems and of the tiny model that solves them."""

    kind: str = "chain"  # "chain" (arithmetic) or "sort" (digits)
    operands: int = 4  # chain only
    max_operand: int = 9  # chain only
    min_digits: int = 6  # sort only: digits 1..9 per prompt, repeats allowed
    max_digits: int = 8  # sort only
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    max_new_tokens: int = 40


# ----------------------------------------------------------------------------- problems


KINDS = ("chain", "sort")
SORT_FIELDS = ("min_digits", "max_digits")
CHAIN_FIELDS = ("operands", "max_operand")


def cache_fields(cfg: TaskConfig) -> dict[str, object]:
    """The fields that define the task + model, for the SFT cache key. The chain task keeps the
    key it had before the sort task existed (no `kind` or digit fields), so its checkpoints stay valid."""
    fields = asdict(cfg)
    if cfg.kind == "chain":
        for name in ("kind", *SORT_FIELDS):
            del fields[name]
    else:
        for name in CHAIN_FIELDS:
            del fields[name]
    return fields


def describe(cfg: TaskConfig) -> str:
    """One phrase for reports, e.g. "chained arithmetic (4 operands in 1..9)"."""
    if cfg.kind == "sort":
        return f"sorting digits ({cfg.min_digits}-{cfg.max_digits} digits in 1..9, repeats allowed)"
    return f"chained arithmetic ({cfg.operands} operands in 1..{cfg.max_operand})"


def make_problem(rng: random.Random, cfg: TaskConfig) -> tuple[str, str, str]:
    """One problem of `cfg.kind`: (prompt text, worked solution, gold answer)."""
    if cfg.kind == "chain":
        return chain_problem(rng, cfg)
    if cfg.kind == "sort":
        return sort_problem(rng, cfg)
    raise ValueError(f"unknown task kind {cfg.kind!r}; expected one of {KINDS}")


def sort_problem(rng: random.Random, cfg: TaskConfig) -> tuple[str, str, str]:
    """``739147=`` -> ``1,3,4,7,7,9. \\boxed{134779}``, gold ``134779``."""
    digits = [rng.randint(1, 9) for _ in range(rng.randint(cfg.min_digits, cfg.max_digits))]
    ordered = "".join(str(d) for d in sorted(digits))
    solution = ",".join(ordered) + f". {BOXED}{ordered}}}"
    return "".join(str(d) for d in digits) + "=", solution, ordered


def chain_problem(rng: random.Random, cfg: TaskConfig) -> tuple[str, str, str]:
    """``23+58-17=`` -> ``23+58=81, 81-17=64. \\boxed{64}``, gold ``64``."""
    values = [rng.randint(1, cfg.max_operand) for _ in range(cfg.operands)]
    ops = [rng.choice("+-") for _ in range(cfg.operands - 1)]
    problem = str(values[0]) + "".join(op + str(v) for op, v in zip(ops, values[1:], strict=True)) + "="
    steps, total = [], values[0]
    for op, v in zip(ops, values[1:], strict=True):
        new = total + v if op == "+" else total - v
        steps.append(f"{total}{op}{v}={new}")
        total = new
    solution = ", ".join(steps) + f". {BOXED}{total}}}"
    return problem, solution, str(total)


def worked_solution(problem: str, cfg: TaskConfig) -> str:
    """The gold worked solution of a prompt text (the one SFT teaches), e.g. for oracle token weights."""
    body = problem.removesuffix("=")
    if cfg.kind == "sort":
        ordered = "".join(sorted(body))
        return ",".join(ordered) + f". {BOXED}{ordered}}}"
    if cfg.kind == "chain":
        tokens = re.findall(r"[+-]|\d+", body)
        total, steps = int(tokens[0]), []
        for op, v in zip(tokens[1::2], tokens[2::2], strict=True):
            new = total + int(v) if op == "+" else total - int(v)
            steps.append(f"{total}{op}{v}={new}")
            total = new
        return ", ".join(steps) + f". {BOXED}{total}}}"
    raise ValueError(f"unknown task kind {cfg.kind!r}; expected one of {KINDS}")


def first_error(response_ids: list[int], gold_ids: list[int]) -> int:
    """Index of the first response token that leaves the gold token sequence (gold ends with eos);
    a response that is a strict prefix of the gold one errs at its last token (it stopped early)."""
    for t, token in enumerate(response_ids):
        if t >= len(gold_ids) or token != gold_ids[t]:
            return t
    return len(response_ids) - 1 if len(response_ids) < len(gold_ids) else len(response_ids)


def problem_set(seed: int, n: int, cfg: TaskConfig, exclude: frozenset[str] = frozenset()) -> list[Prompt]:
    """`n` distinct problems drawn from `seed`, none of them in `exclude` (e.g. the held-out set)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Prompt] = []
    while len(out) < n:
        problem, _, gold = make_problem(rng, cfg)
        if problem in seen or problem in exclude:
            continue
        seen.add(problem)
        out.append(Prompt(prompt_id=f"s{seed}-{len(out)}", problem=problem, gold=gold))
    return out


def solution_pairs(seed: int, n: int, cfg: TaskConfig, exclude: frozenset[str]) -> list[tuple[str, str]]:
    """(problem, worked solution) pairs for SFT, none of them in `exclude`."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        problem, solution, _ = make_problem(rng, cfg)
        if problem not in exclude:
            out.append((problem, solution))
    return out


# ----------------------------------------------------------------------------- tokenizer + model


def build_tokenizer():
    """A character-level HF fast tokenizer; ``\\boxed{`` is one token."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARACTERS + [BOXED])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_model(cfg: TaskConfig, tokenizer, seed: int):
    """A freshly initialised tiny Llama over the character vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 4,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def encode_prompt(tokenizer, problem: str) -> list[int]:
    return [tokenizer.bos_token_id] + tokenizer(problem, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- generation


@dataclass
class Generation:
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    response_text: str
    logprobs: list[float]
    truncated: bool


@torch.no_grad()
def generate(
    model,
    tokenizer,
    problems: list[str],
    *,
    samples: int,
    greedy: bool,
    max_new_tokens: int,
    batch: int = 256,
    top_p: float = 1.0,
) -> list[list[Generation]]:
    """`samples` answers per problem (temperature 1.0, nucleus `top_p`, no top-k; or greedy), with the
    log-probs of the full distribution."""
    model.eval()
    flat = [p for p in problems for _ in range(samples)]
    out: list[Generation] = []
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for start in range(0, len(flat), batch):
        chunk = [encode_prompt(tokenizer, p) for p in flat[start : start + batch]]
        width = max(len(c) for c in chunk)
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk])
        mask = (ids != pad).long()
        res = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=not greedy,
            temperature=1.0 if not greedy else None,
            top_k=0 if not greedy else None,
            top_p=top_p if not greedy else None,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new = res.sequences[:, width:]
        logits = torch.stack(res.logits, dim=1).float()  # [B, T, V]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, new[:, : logits.shape[1], None]).squeeze(-1)
        for row, prompt_ids in enumerate(chunk):
            tokens = new[row].tolist()
            length = tokens.index(eos) + 1 if eos in tokens else len(tokens)
            truncated = eos not in tokens
            response = tokens[:length]
            text = tokenizer.decode([t for t in response if t != eos], skip_special_tokens=True)
            out.append(Generation(prompt_ids, response, text, logp[row, :length].tolist(), truncated))
    return [out[i * samples : (i + 1) * samples] for i in range(len(problems))]


def pass_at_1(model, tokenizer, prompts: list[Prompt], verifier, max_new_tokens: int) -> float:
    """Greedy pass@1 on `prompts`, answers checked by the project's verifier."""
    gens = generate(
        model, tokenizer, [p.problem for p in prompts], samples=1, greedy=True, max_new_tokens=max_new_tokens
    )
    verdicts = verifier.verify_batch(
        [(p.gold, g[0].response_text, g[0].truncated) for p, g in zip(prompts, gens, strict=True)]
    )
    return sum(v.correct for v in verdicts) / len(prompts)


# ----------------------------------------------------------------------------- SFT warm start


@dataclass(frozen=True)
class SFTConfig:
    """Supervised warm start, stopped as soon as greedy pass@1 on a validation set reaches `target`."""

    target: float = 0.3
    max_steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    check_every: int = 100
    validation_size: int = 200
    seed: int = 1234


def sft_batch(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels) with labels only on the solution + eos."""
    rows, labels = [], []
    for problem, solution in pairs:
        p = encode_prompt(tokenizer, problem)
        s = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + s)
        labels.append([-100] * len(p) + s)
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, (ids != tokenizer.pad_token_id).long(), lab


def train_sft(
    cfg: TaskConfig, sft: SFTConfig, exclude: frozenset[str], verifier, log=print
) -> tuple[object, object, dict]:
    """Train the tiny model by SFT until validation pass@1 ≥ `sft.target`; returns (model, tokenizer, info)."""
    tokenizer = build_tokenizer()
    model = build_model(cfg, tokenizer, sft.seed)
    validation = problem_set(sft.seed + 1, sft.validation_size, cfg, exclude)
    held = exclude | {p.problem for p in validation}
    opt = torch.optim.AdamW(model.parameters(), lr=sft.lr, weight_decay=0.0)
    rng_seed = sft.seed + 2
    t0, step, score = time.time(), 0, 0.0
    for step in range(1, sft.max_steps + 1):
        model.train()
        # cosine-free constant LR with a short linear warm-up keeps the early-stopping point predictable
        for group in opt.param_groups:
            group["lr"] = sft.lr * min(1.0, step / 50)
        pairs = solution_pairs(rng_seed + step, sft.batch_size, cfg, held)
        ids, mask, lab = sft_batch(tokenizer, pairs)
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % sft.check_every == 0:
            score = pass_at_1(model, tokenizer, validation, verifier, cfg.max_new_tokens)
            log(
                f"sft step {step}: loss {loss.item():.3f} validation pass@1 {score:.3f} ({time.time() - t0:.0f}s)"
            )
            if score >= sft.target:
                break
    if not math.isfinite(loss.item()):
        raise RuntimeError("SFT diverged")
    return model, tokenizer, {"steps": step, "validation_pass_at_1": score, "seconds": time.time() - t0}


def save_checkpoint(model, tokenizer, path: Path) -> None:
    """HF folder: config.json, model.safetensors, tokenizer files."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
