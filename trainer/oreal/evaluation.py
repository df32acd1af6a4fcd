"""`oreal eval`: pass@1 (and unbiased pass@k) of any HF checkpoint on a MATH-500/GSM8K-format file.

    oreal eval --model runs/quickstart/policy/v000005 --data ../shared/data/gsm8k.jsonl --limit 100

Greedy decoding by default (with --samples k > 1 the default temperature becomes 0.6), graded by
the same verifier the training run uses. Writes OUT/results.jsonl (one line per problem) and
OUT/summary.json. `--spec RUN.yaml` takes the prompt template, system prompt, chat setting and
length limits from a run spec, so a checkpoint is evaluated exactly as it was trained.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

DEFAULT_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="pass@1 / pass@k of a checkpoint on a MATH-500 or GSM8K-format file",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True, help="HF-format model folder (e.g. a run's policy/vNNNNNN)")
    p.add_argument(
        "--data", required=True, help="JSONL/Parquet file or URI (fields problem|question, answer)"
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    p.add_argument("--samples", type=int, default=1, help="samples per problem (k of pass@k)")
    p.add_argument("--output", type=Path, default=None, help="output folder (default: eval/<model>-<data>)")
    p.add_argument("--spec", default=None, help="take template, chat setting and lengths from this run spec")
    p.add_argument("--prompt-field", default=None, help="default: problem, question or prompt (auto)")
    p.add_argument("--answer-field", default="answer")
    p.add_argument(
        "--template", default=None, help=f"prompt template with {{problem}} (default: {DEFAULT_TEMPLATE!r})"
    )
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 1024 (or the spec's)")
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0, help="verifier wall-clock limit per answer")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import os

    # Before torch loads: idle OpenMP threads must sleep, not spin, on a shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from oreal.data import DataError

    try:
        summary = evaluate(args)
    except (DataError, EvalError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


class EvalError(RuntimeError):
    """Bad arguments or inputs for `oreal eval`."""


def _settings(args: argparse.Namespace) -> dict:
    s = {
        "template": DEFAULT_TEMPLATE,
        "system_prompt": None,
        "chat": True,
        "max_new_tokens": 1024,
        "max_prompt_tokens": None,
    }
    if args.spec:
        from oreal.spec import SpecError, load_run

        spec = args.spec
        if isinstance(spec, (str, Path)):
            try:
                spec = load_run(spec).spec
            except SpecError as err:
                raise EvalError(str(err)) from None
        s |= {
            "template": spec.data.prompt_template,
            "system_prompt": spec.data.system_prompt,
            "chat": spec.data.use_chat_template,
            "max_new_tokens": spec.sampling.max_new_tokens,
            "max_prompt_tokens": spec.sampling.max_prompt_tokens,
        }
    if args.template is not None:
        s["template"] = args.template
    if args.system_prompt is not None:
        s["system_prompt"] = args.system_prompt
    if args.no_chat_template:
        s["chat"] = False
    if args.max_new_tokens is not None:
        s["max_new_tokens"] = args.max_new_tokens
    return s


def evaluate(args: argparse.Namespace) -> dict:
    from oreal.data import encode_prompt, load_prompts, render_prompt
    from oreal.data.prompts import guess_fields
    from oreal.engines import SamplingOptions, make_engine, sample_seed
    from oreal.verifier import Verifier

    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise EvalError(f"--model {model}: not a model folder (no config.json)")
    if args.samples < 1:
        raise EvalError("--samples must be >= 1")
    settings = _settings(args)
    prompt_field = args.prompt_field or guess_fields(args.data)[0]
    prompts = load_prompts(args.data, prompt_field, args.answer_field)
    if args.limit is not None:
        prompts = prompts[: args.limit]
    temperature = args.temperature if args.temperature is not None else (0.0 if args.samples == 1 else 0.6)
    sampling = SamplingOptions(
        temperature=temperature, top_p=args.top_p, max_new_tokens=settings["max_new_tokens"]
    )

    engine = make_engine(args.engine, batch_size=args.batch_size, seed=args.seed, dtype=args.dtype)
    engine.load(model)
    rows, seeds = [], []
    for prompt in prompts:
        text = render_prompt(
            engine.tokenizer,
            prompt.problem,
            settings["template"],
            settings["system_prompt"],
            settings["chat"],
        )
        ids = encode_prompt(engine.tokenizer, text, settings["chat"], settings["max_prompt_tokens"])
        for j in range(args.samples):
            rows.append(ids)
            seeds.append(sample_seed(args.seed, 0, prompt.prompt_id, j))
    start = time.perf_counter()
    outputs = engine.generate(rows, seeds, sampling)
    generate_seconds = time.perf_counter() - start
    engine.close()
    golds = [p.gold for p in prompts for _ in range(args.samples)]
    with Verifier(timeout_seconds=args.timeout, workers=1) as verifier:
        verdicts = verifier.verify_batch(
            [(g, o.text, o.truncated) for g, o in zip(golds, outputs, strict=True)]
        )

    out_dir = args.output or Path("eval") / f"{model.name}-{Path(args.data).stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    k = args.samples
    per_problem, statuses = [], Counter(v.status for v in verdicts)
    with open(out_dir / "results.jsonl", "w") as f:
        for i, prompt in enumerate(prompts):
            outs, vs = outputs[i * k : (i + 1) * k], verdicts[i * k : (i + 1) * k]
            c = sum(v.correct for v in vs)
            row = {
                "id": prompt.prompt_id,
                "problem": prompt.problem,
                "gold": prompt.gold,
                "responses": [o.text for o in outs],
                "extracted": [v.extracted for v in vs],
                "status": [v.status for v in vs],
                "correct": c,
                "pass@1": c / k,
                f"pass@{k}": pass_at_k(k, c, k),
            }
            per_problem.append(row)
            f.write(json.dumps(row) + "\n")
    n = max(len(per_problem), 1)
    summary = {
        "model": str(model),
        "data": str(args.data),
        "problems": len(per_problem),
        "samples": k,
        "temperature": temperature,
        "pass@1": sum(r["pass@1"] for r in per_problem) / n,
        f"pass@{k}": sum(r[f"pass@{k}"] for r in per_problem) / n,
        "statuses": dict(statuses),
        "truncated": sum(o.truncated for o in outputs),
        "generated_tokens": sum(len(o.token_ids) for o in outputs),
        "generate_seconds": round(generate_seconds, 2),
        "results": str(out_dir / "results.jsonl"),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate_policy(model: Path, data: str, spec, output: Path, limit: int | None = None) -> dict:
    """Greedy pass@1 of `model` on `data` with the run's prompt format (for spec.evaluation)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    argv = [
        "eval",
        "--model",
        str(model),
        "--data",
        data,
        "--output",
        str(output),
        "--dtype",
        spec.model.dtype,
    ]
    args = parser.parse_args(argv + (["--limit", str(limit)] if limit else []))
    args.spec = spec
    return evaluate(args)
