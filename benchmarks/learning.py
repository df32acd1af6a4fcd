"""The paper's ablation in miniature (Lyu et al. 2025, Table 2): REINFORCE, GRPO, OREAL without
token weights and full OREAL, trained from the same SFT warm start on a synthetic arithmetic task.

    python benchmarks/learning.py [--steps N] [--seeds 0 1 2] [--methods ...] [--out DIR] [--quick] [--jobs 2]

Every RL step goes through the project's real code path: rollouts are sampled from the trainer's
own policy module (temperature 1.0), rewards come from `oreal.verifier.Verifier`, and the update is
`oreal.training.OREALTrainer.train_step`. Held-out pass@1 (greedy, verifier-checked) is measured
every `eval_every` steps. Writes learning.json, learning.md and learning.png into --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning_task as lt  # noqa: E402
import torch  # noqa: E402

from oreal.trajectory import Prompt, RolloutSample, ScoredSample, Verdict  # noqa: E402

METHODS = ("reinforce", "grpo", "oreal_no_tw", "oreal")
LABELS = {
    "reinforce": "REINFORCE (RLOO)",
    "grpo": "GRPO",
    "oreal_no_tw": "OREAL w/o token weights",
    "oreal": "OREAL (full)",
}

# Per-step trainer stats kept in learning.json (NaN where a method does not produce one).
TRACKED = (
    "kept_samples",
    "kl",
    "entropy",
    "rm/accuracy",
    "omega/positive",
    "omega/negative",
    "grad_norm/policy",
)


@dataclass(frozen=True)
class BenchConfig:
    """Shared hyperparameters: identical for every method (tuned once, never per method)."""

    steps: int = 100
    prompts_per_step: int = 32
    samples_per_prompt: int = 8
    eval_every: int = 20
    eval_size: int = 400
    lr: float = 3e-4
    min_lr: float = 3e-5
    reward_model_lr: float = 1.2e-3  # 4x the policy lr, the paper's ratio (2e-6 vs 5e-7); not tuned
    warmup_steps: int = 10  # reward-model-only steps (the paper's 10); only full OREAL has a reward model
    keep_per_prompt: int | str = 1  # OREAL's filter (project default); diagnostics only may change it
    variant: str = "reference"  # algorithm.variant of both OREAL rows
    threads: int = 1
    task: lt.TaskConfig = lt.TaskConfig()
    sft: lt.SFTConfig = lt.SFTConfig()


def method_spec(method: str, cfg: BenchConfig, seed: int):
    """The run spec of one method; all method-specific knobs stay at the project's defaults."""
    from oreal.spec.models import OREALRunSpec

    algorithm = "oreal" if method.startswith("oreal") else method
    return OREALRunSpec.model_validate(
        {
            "model": {"policy": "sft", "dtype": "float32"},
            "data": {"prompts": "generated"},
            "algorithm": {
                "name": algorithm,
                "variant": cfg.variant if algorithm == "oreal" else "reference",
                "tokenWeights": method == "oreal",
                "steps": cfg.steps,
                "warmupSteps": cfg.warmup_steps,
                "promptsPerStep": cfg.prompts_per_step,
                "samplesPerPrompt": cfg.samples_per_prompt,
                "policyOptimizer": {"lr": cfg.lr, "minLr": cfg.min_lr, "weightDecay": 0.0},
                "rewardModelOptimizer": {
                    "lr": cfg.reward_model_lr,
                    "minLr": cfg.reward_model_lr / 5,
                    "weightDecay": 0.0,
                },
                "keepPerPrompt": cfg.keep_per_prompt,
                "seed": seed,
            },
            "trainer": {
                "backend": "torch",
                "gpusPerNode": 0,
                "gradientCheckpointing": False,
                "microBatchSize": cfg.prompts_per_step * cfg.samples_per_prompt,
            },
        }
    )


# ----------------------------------------------------------------------------- data


def held_out(cfg: BenchConfig) -> list[Prompt]:
    return lt.problem_set(seed=777, n=cfg.eval_size, cfg=cfg.task)


def step_prompts(cfg: BenchConfig, seed: int, step: int, exclude: frozenset[str]) -> list[Prompt]:
    """The prompts of (seed, step): the same for every method."""
    return lt.problem_set(
        seed=100_000 * (seed + 1) + step, n=cfg.prompts_per_step, cfg=cfg.task, exclude=exclude
    )


def sft_checkpoint(cfg: BenchConfig, cache: Path, exclude: frozenset[str], verifier, log=print) -> Path:
    """Train (or reuse) the SFT warm start; the cache key is the task + SFT config."""
    blob = json.dumps([lt.cache_fields(cfg.task), asdict(cfg.sft)], sort_keys=True).encode()
    key = hashlib.sha256(blob).hexdigest()[:12]
    path = cache / f"sft-{key}"
    if (path / "info.json").is_file():
        log(f"reusing SFT checkpoint {path}")
        return path
    model, tokenizer, info = lt.train_sft(cfg.task, cfg.sft, exclude, verifier, log=log)
    lt.save_checkpoint(model, tokenizer, path)
    (path / "info.json").write_text(json.dumps(info))
    return path


# ----------------------------------------------------------------------------- one run


def rollout(
    policy, tokenizer, prompts: list[Prompt], cfg: BenchConfig, step: int, verifier
) -> list[ScoredSample]:
    """Sample `samples_per_prompt` answers per prompt from the current policy and score them."""
    was_training = policy.training
    gens = lt.generate(
        policy,
        tokenizer,
        [p.problem for p in prompts],
        samples=cfg.samples_per_prompt,
        greedy=False,
        max_new_tokens=cfg.task.max_new_tokens,
    )
    policy.train(was_training)
    samples = [
        RolloutSample(
            step=step,
            prompt_id=p.prompt_id,
            sample_index=i,
            prompt_text=p.problem,
            prompt_token_ids=g.prompt_token_ids,
            response_token_ids=g.response_token_ids,
            response_text=g.response_text,
            gold=p.gold,
            policy_version=step,
            truncated=g.truncated,
            logprobs=g.logprobs,
        )
        for p, group in zip(prompts, gens, strict=True)
        for i, g in enumerate(group)
    ]
    verdicts = verifier.verify_batch([(s.gold, s.response_text, s.truncated) for s in samples])
    return [
        ScoredSample(
            s, Verdict(step, s.prompt_id, s.sample_index, v.correct, v.status, v.extracted, v.seconds)
        )
        for s, v in zip(samples, verdicts, strict=True)
    ]


def evaluate(policy, tokenizer, prompts: list[Prompt], cfg: BenchConfig, verifier) -> float:
    was_training = policy.training
    score = lt.pass_at_1(policy, tokenizer, prompts, verifier, cfg.task.max_new_tokens)
    policy.train(was_training)
    return score


def run_one(method: str, seed: int, cfg: BenchConfig, sft_path: str, log=print) -> dict:
    """One RL run: returns the held-out curve, per-step training stats and wall time."""
    from transformers import AutoTokenizer

    from oreal.training import OREALTrainer
    from oreal.verifier import Verifier

    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    trainer = OREALTrainer(method_spec(method, cfg, seed), policy_path=sft_path, device="cpu")
    policy = trainer.policy.module
    test = held_out(cfg)
    exclude = frozenset(p.problem for p in test)
    curve: list[tuple[int, float]] = []
    train_pass: list[float] = []
    history: dict[str, list[float]] = {k: [] for k in TRACKED}
    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        curve.append((0, evaluate(policy, tokenizer, test, cfg, verifier)))
        for step in range(cfg.steps):
            torch.manual_seed(seed * 1_000_003 + step)  # same sampling noise for every method
            scored = rollout(policy, tokenizer, step_prompts(cfg, seed, step, exclude), cfg, step, verifier)
            stats = trainer.train_step(scored, step)
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if bad:
                raise RuntimeError(f"{method} seed {seed} step {step}: non-finite stats {bad}")
            train_pass.append(stats["pass_rate"])
            for k in TRACKED:
                history[k].append(stats.get(k, float("nan")))
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                curve.append((step + 1, evaluate(policy, tokenizer, test, cfg, verifier)))
                log(
                    f"  {method:<12} seed {seed} step {step + 1:>3}: held-out pass@1 {curve[-1][1]:.3f}"
                    f"  train pass {stats['pass_rate']:.2f}  kept {stats.get('kept_samples', 0):.0f}"
                    f"  ({time.time() - t0:.0f}s)"
                )
    return {
        "method": method,
        "seed": seed,
        "curve": curve,
        "train_pass_rate": train_pass,
        "stats": history,
        "seconds": time.time() - t0,
    }


# ----------------------------------------------------------------------------- reporting


def summarize(runs: list[dict], methods: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        finals = [100 * r["curve"][-1][1] for r in rs]
        bests = [100 * max(v for _, v in r["curve"]) for r in rs]
        out[m] = {
            "final_mean": statistics.fmean(finals),
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "best_mean": statistics.fmean(bests),
            "start": 100 * rs[0]["curve"][0][1],
            "seconds": sum(r["seconds"] for r in rs),
            "seeds": len(rs),
        }
    return out


def table(summary: dict[str, dict[str, float]], cfg: BenchConfig) -> str:
    lines = [
        "| method | held-out pass@1 at end (mean ± std) | best during run (mean) | start (SFT) | seeds | run time |",
        "|---|---|---|---|---|---|",
    ]
    for m, s in summary.items():
        lines.append(
            f"| {LABELS[m]} | {s['final_mean']:.1f} ± {s['final_std']:.1f} | {s['best_mean']:.1f} "
            f"| {s['start']:.1f} | {s['seeds']} | {s['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def diagnostics(runs: list[dict], methods: list[str]) -> str:
    """Mean over seeds of the trainer's stats averaged over the last quarter of the steps."""
    lines = ["| method | " + " | ".join(TRACKED) + " |", "|---|" + "---|" * len(TRACKED)]
    for m in methods:
        cells = []
        for k in TRACKED:
            vals = []
            for r in runs:
                if r["method"] == m:
                    xs = [x for x in r["stats"][k][-max(1, len(r["stats"][k]) // 4) :] if math.isfinite(x)]
                    vals += xs
            cells.append(f"{statistics.fmean(vals):.3g}" if vals else "–")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_lines(summary: dict[str, dict[str, float]]) -> list[str]:
    if "oreal" not in summary:
        return []
    return [
        f"oreal - {b}: {summary['oreal']['final_mean'] - summary[b]['final_mean']:+.1f} points"
        for b in ("grpo", "reinforce", "oreal_no_tw")
        if b in summary
    ]


def plot(runs: list[dict], methods: list[str], path: Path, cfg: BenchConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        steps = [s for s, _ in rs[0]["curve"]]
        vals = torch.tensor([[100 * v for _, v in r["curve"]] for r in rs])
        mean, std = vals.mean(0), (vals.std(0) if len(rs) > 1 else torch.zeros(len(steps)))
        ax.plot(steps, mean, marker="o", label=LABELS[m])
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        tp = torch.tensor([r["train_pass_rate"] for r in rs]).mean(0) * 100
        k = 5
        smooth = torch.nn.functional.avg_pool1d(
            tp[None, None], k, 1, padding=k // 2, count_include_pad=False
        )[0, 0]
        ax2.plot(range(1, len(tp) + 1), smooth[: len(tp)], label=LABELS[m])
    ax.set(
        xlabel="RL step",
        ylabel="held-out pass@1 (%)",
        title="Held-out pass@1 (greedy), mean ± std over seeds",
    )
    ax2.set(xlabel="RL step", ylabel="sampled pass rate (%)", title="Training pass rate (T=1, smoothed)")
    ax.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(
        f"OREAL ablation in miniature: {cfg.prompts_per_step} prompts x {cfg.samples_per_prompt} samples/step"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(runs, methods, cfg, out: Path, sft_info: dict, wall: float) -> str:
    summary = summarize(runs, methods)
    text = table(summary, cfg)
    gaps = gap_lines(summary)
    md = [
        "# Learning benchmark: the OREAL ablation in miniature",
        "",
        f"Task: {lt.describe(cfg.task)}, tiny Llama "
        f"(hidden {cfg.task.hidden_size}, {cfg.task.layers} layers, character vocabulary), SFT warm start "
        f"stopped at validation pass@1 {sft_info.get('validation_pass_at_1', float('nan')):.2f} "
        f"after {sft_info.get('steps', '?')} steps.",
        f"RL: {cfg.steps} steps x {cfg.prompts_per_step} prompts x {cfg.samples_per_prompt} samples, "
        f"policy lr {cfg.lr} -> {cfg.min_lr} (cosine), reward-model lr {cfg.reward_model_lr}, "
        f"reward-model warm-up {cfg.warmup_steps} steps (full OREAL only), OREAL keeps "
        f"{cfg.keep_per_prompt} correct + wrong per group, held-out set of "
        f"{cfg.eval_size} problems, greedy pass@1 checked by `oreal.verifier.Verifier`.",
        f"Total wall time {wall / 60:.1f} min on this machine.",
        "",
        text,
        "",
        *[f"- {g}" for g in gaps],
        "",
        "![curves](learning.png)",
        "",
        "Trainer statistics, last quarter of the steps (mean over seeds):",
        "",
        diagnostics(runs, methods),
        *(
            ["", "Hand-written analysis and diagnostics: [learning_analysis.md](learning_analysis.md)."]
            if (out / "learning_analysis.md").is_file()
            else []
        ),
        "",
    ]
    (out / "learning.md").write_text("\n".join(md))
    return text + "\n" + "\n".join(gaps)


# ----------------------------------------------------------------------------- CLI


def quick_config() -> BenchConfig:
    """A tiny configuration for the smoke test: a few steps of each method, no target."""
    return BenchConfig(
        steps=3,
        prompts_per_step=2,
        samples_per_prompt=4,
        eval_every=2,
        eval_size=8,
        warmup_steps=1,
        sft=replace(lt.SFTConfig(), max_steps=4, check_every=2, validation_size=4, target=1.1),
        task=replace(lt.TaskConfig(), max_new_tokens=24),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lr", type=float, help="policy learning rate (shared by every method)")
    ap.add_argument("--prompts-per-step", type=int)
    ap.add_argument("--reward-model-lr", type=float, help="diagnostics only (default: 4x the policy lr)")
    ap.add_argument(
        "--keep-per-prompt", help="diagnostics only: OREAL's kept samples per group, int or 'all'"
    )
    ap.add_argument(
        "--variant", choices=["reference", "paper"], help="diagnostics only: OREAL's loss variant"
    )
    ap.add_argument("--task", choices=lt.KINDS, help="chain (default) or sort")
    ap.add_argument(
        "--digits", type=int, nargs=2, metavar=("MIN", "MAX"), help="sort task: digits per prompt"
    )
    ap.add_argument("--hidden-size", type=int, help="tiny model width (default: TaskConfig's 64)")
    ap.add_argument("--layers", type=int, help="tiny model depth (default: TaskConfig's 2)")
    ap.add_argument("--heads", type=int, help="attention heads (default: TaskConfig's 4)")
    ap.add_argument("--sft-target", type=float, help="stop SFT at this validation pass@1 (default 0.3)")
    ap.add_argument("--sft-check-every", type=int, help="SFT steps between validations (default 100)")
    ap.add_argument("--sft-lr", type=float, help="SFT learning rate (default 3e-3)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--cache", type=Path, help="SFT cache folder (default: OUT/cache)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes, 1 thread each)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    args = ap.parse_args(argv)

    cfg = quick_config() if args.quick else BenchConfig()
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    if args.lr:
        cfg = replace(cfg, lr=args.lr, min_lr=args.lr / 10, reward_model_lr=4 * args.lr)
    if args.keep_per_prompt:
        keep = args.keep_per_prompt
        cfg = replace(cfg, keep_per_prompt=keep if keep == "all" else int(keep))
    if args.reward_model_lr:
        cfg = replace(cfg, reward_model_lr=args.reward_model_lr)
    if args.variant:
        cfg = replace(cfg, variant=args.variant)
    if args.prompts_per_step:
        cfg = replace(cfg, prompts_per_step=args.prompts_per_step)
    if args.task:
        cfg = replace(cfg, task=replace(cfg.task, kind=args.task))
    if args.digits:
        cfg = replace(cfg, task=replace(cfg.task, min_digits=args.digits[0], max_digits=args.digits[1]))
    for flag, field in (("hidden_size", "hidden_size"), ("layers", "layers"), ("heads", "heads")):
        if getattr(args, flag) is not None:
            cfg = replace(cfg, task=replace(cfg.task, **{field: getattr(args, flag)}))
    for flag, field in (("sft_target", "target"), ("sft_check_every", "check_every"), ("sft_lr", "lr")):
        if getattr(args, flag) is not None:
            cfg = replace(cfg, sft=replace(cfg.sft, **{field: getattr(args, flag)}))
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    torch.set_num_threads(cfg.threads if args.jobs > 1 else max(cfg.threads, 1))
    from oreal.verifier import Verifier

    t0 = time.time()
    test = held_out(cfg)
    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        sft_path = sft_checkpoint(cfg, cache, frozenset(p.problem for p in test), verifier)
    sft_info = json.loads((sft_path / "info.json").read_text())
    print(f"SFT checkpoint {sft_path}: {sft_info}")

    jobs = [(m, s, cfg, str(sft_path)) for s in args.seeds for m in args.methods]
    partial = args.out / "learning_runs.jsonl"  # one line per finished run, so a cut-off run keeps its data
    partial.write_text("")
    runs: list[dict] = []
    if args.jobs > 1:
        # ProcessPoolExecutor workers are not daemonic, so the verifier may start its own workers.
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(run_one, *j) for j in jobs]):
                runs.append(fut.result())
                with partial.open("a") as f:
                    f.write(json.dumps(runs[-1]) + "\n")
    else:
        for j in jobs:
            runs.append(run_one(*j))
            with partial.open("a") as f:
                f.write(json.dumps(runs[-1]) + "\n")
    order = {(m, s): i for i, (m, s, _, _) in enumerate(jobs)}
    runs.sort(key=lambda r: order[(r["method"], r["seed"])])
    wall = time.time() - t0

    (args.out / "learning.json").write_text(
        json.dumps({"config": asdict(cfg), "sft": sft_info, "runs": runs})
    )
    plot(runs, args.methods, args.out / "learning.png", cfg)
    print(write_report(runs, args.methods, cfg, args.out, sft_info, wall))
    print(f"total {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
