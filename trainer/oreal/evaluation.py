"""Pass@1 (and unbiased pass@k) of an HF checkpoint on a MATH-500/GSM8K-format file.

Library: `evaluate(model, data, settings, output)`, or `evaluate_policy(model, data, spec, output)`
for a policy of a run (its prompt format, lengths and dtype). Command line, on top of it:

    oreal eval --model runs/quickstart/policy/v000005 --data ../shared/data/gsm8k.jsonl --limit 100

Greedy decoding by default (with k > 1 samples the default temperature becomes 0.6), graded by the
same verifier the training run uses. Writes OUT/results.jsonl (one line per problem) and
OUT/summary.json. `--spec RUN.yaml` takes the prompt template, system prompt, chat setting, length
limits and dtype from a run spec, so a checkpoint is evaluated exactly as it was trained.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from oreal.spec.models import DataSpec

# Without a spec, problems are prompted as a run is by default (the spec's defaults, not copies).
DEFAULT_TEMPLATE: str = DataSpec.model_fields["prompt_template"].default
DEFAULT_CHAT: bool = DataSpec.model_fields["use_chat_template"].default


class EvalError(RuntimeError):
    """Bad arguments or inputs for an evaluation."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass(frozen=True)
class EvalSettings:
    """How problems are prompted, sampled and graded."""

    template: str = DEFAULT_TEMPLATE
    system_prompt: str | None = None
    chat: bool = DEFAULT_CHAT
    max_new_tokens: int = 1024
    max_prompt_tokens: int | None = None
    samples: int = 1  # k of pass@k
    temperature: float | None = None  # None: 0 (greedy) for one sample, 0.6 for several
    top_p: float = 0.95
    engine: str = "hf"
    batch_size: int = 16
    dtype: str = "auto"
    seed: int = 0
    timeout_seconds: float = 5.0  # verifier wall-clock limit per answer

    @classmethod
    def from_spec(cls, spec, **overrides: Any) -> EvalSettings:
        """The run's prompt format, length limits and dtype (a run's policies are evaluated as trained)."""
        fields = {
            "template": spec.data.prompt_template,
            "system_prompt": spec.data.system_prompt,
            "chat": spec.data.use_chat_template,
            "max_new_tokens": spec.sampling.max_new_tokens,
            "max_prompt_tokens": spec.sampling.max_prompt_tokens,
            "dtype": spec.model.dtype,
        }
        return cls(**(fields | overrides))

    @property
    def sampling_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.6


def evaluate(
    model: Path,
    data: str,
    settings: EvalSettings,
    output: Path,
    *,
    limit: int | None = None,
    prompt_field: str | None = None,
    answer_field: str = "answer",
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `data`; writes `output`/results.jsonl and summary.json, returns the summary."""
    model = Path(model)
    if not (model / "config.json").is_file():
        raise EvalError(f"model {model}: not a model folder (no config.json)")
    if settings.samples < 1:
        raise EvalError("samples must be >= 1")
    prompts = load_problems(data, prompt_field, answer_field, limit, storage_options)
    outputs, seconds = generate_answers(model, prompts, settings)
    golds = [p.gold for p in prompts for _ in range(settings.samples)]
    verdicts = grade(golds, outputs, settings.timeout_seconds)
    rows = write_results(output, prompts, outputs, verdicts, settings.samples)
    summary = summarize(rows, outputs, verdicts, settings) | {
        "model": str(model),
        "data": str(data),
        "generate_seconds": round(seconds, 2),
        "results": str(Path(output) / "results.jsonl"),
    }
    (Path(output) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate_policy(model: Path, data: str, spec, output: Path, storage_options=None) -> dict[str, Any]:
    """Greedy pass@1 of a run's policy with the run's prompt format (spec.evaluation)."""
    return evaluate(model, data, EvalSettings.from_spec(spec), output, storage_options=storage_options)


# ----------------------------------------------------------------------------- the steps


def load_problems(data: str, prompt_field: str | None, answer_field: str, limit: int | None, options=None):
    from oreal.data import load_prompts
    from oreal.data.prompts import guess_fields

    field = prompt_field or guess_fields(data, options)[0]
    prompts = load_prompts(data, field, answer_field, storage_options=options)
    return prompts[:limit] if limit is not None else prompts


def generate_answers(model: Path, prompts, settings: EvalSettings) -> tuple[list, float]:
    """`settings.samples` answers per problem (problem-major), and the generation's wall time."""
    from oreal.data import encode_prompt, render_prompt
    from oreal.engines import SamplingOptions, make_generation_engine, sample_seed

    engine = make_generation_engine(
        settings.engine, batch_size=settings.batch_size, seed=settings.seed, dtype=settings.dtype
    )
    try:
        engine.load(model)
        rows, seeds = [], []
        for prompt in prompts:
            text = render_prompt(
                engine.tokenizer, prompt.problem, settings.template, settings.system_prompt, settings.chat
            )
            ids = encode_prompt(engine.tokenizer, text, settings.chat, settings.max_prompt_tokens)
            for j in range(settings.samples):
                rows.append(ids)
                seeds.append(sample_seed(settings.seed, 0, prompt.prompt_id, j))
        sampling = SamplingOptions(
            temperature=settings.sampling_temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
        )
        start = time.perf_counter()
        outputs = engine.generate(rows, seeds, sampling)
        return outputs, time.perf_counter() - start
    finally:
        engine.close()


def grade(golds: list[str], outputs: list, timeout_seconds: float) -> list:
    from oreal.verifier import Verifier

    with Verifier(timeout_seconds=timeout_seconds, workers=1) as verifier:
        return verifier.verify_batch([(g, o.text, o.truncated) for g, o in zip(golds, outputs, strict=True)])


def write_results(output: Path, prompts, outputs: list, verdicts: list, k: int) -> list[dict[str, Any]]:
    """results.jsonl: per problem its responses, extracted answers, statuses and pass@1 / pass@k."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(output / "results.jsonl", "w") as f:
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
            rows.append(row)
            f.write(json.dumps(row) + "\n")
    return rows


def summarize(
    rows: list[dict[str, Any]], outputs: list, verdicts: list, settings: EvalSettings
) -> dict[str, Any]:
    k, n = settings.samples, max(len(rows), 1)
    return {
        "problems": len(rows),
        "samples": k,
        "temperature": settings.sampling_temperature,
        "pass@1": sum(r["pass@1"] for r in rows) / n,
        f"pass@{k}": sum(r[f"pass@{k}"] for r in rows) / n,
        "statuses": dict(Counter(v.status for v in verdicts)),
        "truncated": sum(o.truncated for o in outputs),
        "generated_tokens": sum(len(o.token_ids) for o in outputs),
    }


# ----------------------------------------------------------------------------- command line


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
    p.add_argument("--samples", type=int, default=None, help="samples per problem (k of pass@k; default 1)")
    p.add_argument("--output", type=Path, default=None, help="output folder (default: eval/<model>-<data>)")
    p.add_argument(
        "--spec", default=None, help="take template, chat setting, lengths and dtype from this run spec"
    )
    p.add_argument("--prompt-field", default=None, help="default: problem, question or prompt (auto)")
    p.add_argument("--answer-field", default="answer")
    p.add_argument(
        "--template", default=None, help=f"prompt template with {{problem}} (default: {DEFAULT_TEMPLATE!r})"
    )
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None, help="default 0.95")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 1024 (or the spec's)")
    p.add_argument("--engine", choices=("hf", "vllm"), default=None, help="default hf")
    p.add_argument("--batch-size", type=int, default=None, help="default 16")
    p.add_argument("--dtype", default=None, help="auto, bfloat16, float32 (default: the spec's, else auto)")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument(
        "--timeout", type=float, default=None, help="verifier wall-clock limit per answer (default 5 s)"
    )
    p.set_defaults(func=main)


def spec_from_args(args: argparse.Namespace):
    """The run spec named by --spec (OREALRunSpec), or None."""
    if not args.spec:
        return None
    from oreal.spec import SpecError, load_run

    try:
        return load_run(args.spec).spec
    except SpecError as err:
        raise EvalError(str(err)) from None


def settings_from_args(args: argparse.Namespace, spec) -> EvalSettings:
    """The spec's settings (or the defaults without one), with the flags given on top."""
    base = EvalSettings() if spec is None else EvalSettings.from_spec(spec)
    flags = {
        "template": args.template,
        "system_prompt": args.system_prompt,
        "chat": False if args.no_chat_template else None,
        "max_new_tokens": args.max_new_tokens,
        "dtype": args.dtype,
        "samples": args.samples,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "engine": args.engine,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "timeout_seconds": args.timeout,
    }
    return replace(base, **{k: v for k, v in flags.items() if v is not None})


def data_options(args: argparse.Namespace, spec) -> dict[str, Any]:
    """fsspec options for --data: with a spec, those of the run's store (its endpoint and region)."""
    if spec is None:
        return {}
    from oreal.spec.storage import storage_location

    return storage_location(spec.storage.uri or args.data, spec.storage).fsspec_options(args.data)


def main(args: argparse.Namespace) -> int:
    import os

    # Before torch loads: idle OpenMP threads must sleep, not spin, on a shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from oreal.data import DataError

    output = args.output or Path("eval") / f"{Path(args.model).name}-{Path(args.data).stem}"
    try:
        spec = spec_from_args(args)
        summary = evaluate(
            Path(args.model),
            args.data,
            settings_from_args(args, spec),
            output,
            limit=args.limit,
            prompt_field=args.prompt_field,
            answer_field=args.answer_field,
            storage_options=data_options(args, spec),
        )
    except (DataError, EvalError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0
