"""Learning with one version of staleness (issue #17): OREAL and GRPO at maxStaleness 0 and 1.

    python benchmarks/staleness.py [--steps N] [--seeds 0 1 2] [--methods oreal grpo] [--jobs 2] [--out DIR]

The same miniature task, SFT warm start, hyperparameters and code path as benchmarks/learning.py
(its BenchConfig, method_spec, rollout, evaluate), with the pipelined schedule of a run whose rollout
runs one version ahead: the answers of step k+1 are sampled by the weights v(k) *before* step k
trains, so from step 1 on every batch is one version stale (the steady state of `maxStaleness: 1`;
the real pipeline takes a fresher version when one is ready). Rows per method:

    staleness 0                      today's on-policy loop
    staleness 1, truncate            importance weights min(r, C = 2), the default correction
    staleness 1, clip                PPO's clip (ε = 0.2, dual clip at C)
    staleness 1, none                the ratio ignored: the bias the correction removes

Held-out pass@1 (greedy, verifier-checked) after the last step, mean ± sd over seeds, and the
trainer's off-policy statistics (mean ratio, share of tokens the bound changed, sequence KL) over the
run. Writes staleness.json and staleness.md into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning as lb  # noqa: E402
import torch  # noqa: E402

# (staleness, offPolicyCorrection) per row
CONFIGS = ((0, "truncate"), (1, "truncate"), (1, "clip"), (1, "none"))
TRACKED = ("offpolicy/ratio", "offpolicy/bounded", "offpolicy/kl", "mismatch/abs_logp", "mismatch/kl")


def run_one(method: str, staleness: int, correction: str, seed: int, cfg, sft_path: str) -> dict:
    """One RL run of `method` with rollout `staleness` versions behind (0 or 1)."""
    from transformers import AutoTokenizer

    from oreal.training import OREALTrainer
    from oreal.verifier import Verifier

    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    spec = lb.method_spec(method, cfg, seed)
    spec.algorithm.max_staleness = staleness
    spec.algorithm.off_policy_correction = correction
    trainer = OREALTrainer(spec, policy_path=sft_path, device="cpu")
    policy = trainer.policy.module
    test = lb.held_out(cfg)
    exclude = frozenset(p.problem for p in test)
    history: dict[str, list[float]] = {k: [] for k in TRACKED}

    def sample(step: int, version: int, verifier):
        torch.manual_seed(seed * 1_000_003 + step)  # the same sampling noise for every row
        prompts = lb.step_prompts(cfg, seed, step, exclude)
        scored = lb.rollout(policy, tokenizer, prompts, cfg, step, verifier)
        for s in scored:
            s.sample.policy_version = version
        return scored

    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        start = lb.evaluate(policy, tokenizer, test, cfg, verifier)
        pending = sample(0, 0, verifier) if staleness else None
        for step in range(cfg.steps):
            if staleness:
                scored = pending
                if step + 1 < cfg.steps:  # sampled by v(step) before step trains: one version stale
                    pending = sample(step + 1, step, verifier)
            else:
                scored = sample(step, step, verifier)
            stats = trainer.train_step(scored, step)
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if bad:
                raise RuntimeError(
                    f"{method} s{staleness} {correction} seed {seed} step {step}: non-finite {bad}"
                )
            for k in TRACKED:
                history[k].append(stats.get(k, float("nan")))
        final = lb.evaluate(policy, tokenizer, test, cfg, verifier)
    print(
        f"  {method:<6} staleness {staleness} {correction:<8} seed {seed}: pass@1 {start:.3f} -> {final:.3f}"
        f" ({time.time() - t0:.0f}s)",
        flush=True,
    )
    return {
        "method": method,
        "staleness": staleness,
        "correction": correction,
        "seed": seed,
        "start": start,
        "final": final,
        "stats": history,
        "seconds": time.time() - t0,
    }


def row_name(staleness: int, correction: str) -> str:
    return "staleness 0" if staleness == 0 else f"staleness 1, {correction}"


def summarize(runs: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for m in methods:
        base = [100 * r["final"] for r in runs if r["method"] == m and r["staleness"] == 0]
        for staleness, correction in CONFIGS:
            rs = [
                r
                for r in runs
                if (r["method"], r["staleness"], r["correction"]) == (m, staleness, correction)
            ]
            if not rs:
                continue
            finals = [100 * r["final"] for r in rs]
            row = {
                "method": m,
                "config": row_name(staleness, correction),
                "mean": statistics.fmean(finals),
                "sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                "finals": finals,
                "start": 100 * rs[0]["start"],
                "minutes": sum(r["seconds"] for r in rs) / 60,
            }
            for k in TRACKED:
                vals = [x for r in rs for x in r["stats"][k] if math.isfinite(x)]
                row[k] = statistics.fmean(vals) if vals else None
            if staleness and len(base) > 1:
                # drop against staleness 0 in points, and in units of the two rows' pooled sd over seeds
                row["drop"] = statistics.fmean(base) - row["mean"]
                pooled = ((statistics.stdev(base) ** 2 + row["sd"] ** 2) / 2) ** 0.5
                row["drop_in_sd"] = row["drop"] / pooled if pooled else None
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    lines = [
        "| method | rollout | held-out pass@1 (mean ± sd) | per seed | drop vs staleness 0: points (pooled sd) "
        "| mean ratio r | tokens bounded | seq. KL(μ‖π_θ) stale | mean abs Δlogp on-policy | run time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = r.get("drop_in_sd")
        lines.append(
            f"| {r['method']} | {r['config']} | {r['mean']:.1f} ± {r['sd']:.1f} | "
            f"{', '.join(f'{x:.1f}' for x in r['finals'])} | "
            f"{'–' if drop is None else format(r['drop'], '+.1f') + ' (' + format(drop, '+.2f') + ')'} | "
            f"{fmt(r['offpolicy/ratio'], '.4f')} | {fmt(r['offpolicy/bounded'], '.3%')} | "
            f"{fmt(r['offpolicy/kl'], '.3g')} | {fmt(r['mismatch/abs_logp'], '.2g')} | {r['minutes']:.1f} min |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="RL steps (default: BenchConfig's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["oreal", "grpo"])
    ap.add_argument("--configs", nargs="+", default=None, help="e.g. 0:truncate 1:truncate 1:none")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--cache", type=Path, help="SFT cache folder (default: OUT/cache)")
    ap.add_argument("--report-only", action="store_true", help="rewrite staleness.md from OUT/staleness.json")
    args = ap.parse_args(argv)
    if args.report_only:
        saved = json.loads((args.out / "staleness.json").read_text())
        rows = summarize(saved["runs"], args.methods)
        write_report(rows, saved["config"]["steps"], saved, args, args.out)
        return 0

    cfg = lb.BenchConfig()
    if args.steps:
        warmup = min(cfg.warmup_steps, args.steps // 10)  # the paper's 10 of 90, scaled down
        cfg = replace(cfg, steps=args.steps, eval_every=args.steps, warmup_steps=warmup)
    configs = CONFIGS
    if args.configs:
        configs = tuple((int(c.split(":")[0]), c.split(":")[1]) for c in args.configs)
    args.out.mkdir(parents=True, exist_ok=True)
    from oreal.verifier import Verifier

    t0 = time.time()
    test = lb.held_out(cfg)
    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        sft_path = lb.sft_checkpoint(
            cfg, args.cache or args.out / "cache", frozenset(p.problem for p in test), verifier
        )
    jobs = [
        (m, s, c, seed, cfg, str(sft_path)) for seed in args.seeds for m in args.methods for s, c in configs
    ]
    runs: list[dict] = []
    partial = args.out / "staleness_runs.jsonl"
    partial.write_text("")
    if args.jobs > 1:
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
    wall = time.time() - t0
    rows = summarize(runs, args.methods)
    saved = {
        "config": asdict(cfg),
        "rows": rows,
        "runs": runs,
        "wall_seconds": wall,
        "loadavg": os.getloadavg(),
    }
    (args.out / "staleness.json").write_text(json.dumps(saved))
    partial.unlink()  # kept only while runs were in flight, so a cut-off run keeps its data
    write_report(rows, cfg.steps, saved, args, args.out)
    return 0


def write_report(rows: list[dict], steps: int, saved: dict, args, out: Path) -> None:
    """staleness.md: the table, then the hand-written analysis of an existing staleness.md (from its
    first '## ' heading on), kept when the table is rewritten."""
    cfg = saved["config"]
    seeds = sorted({r["seed"] for r in saved["runs"]})
    text = table(rows)
    head = [
        "# Learning with stale rollouts (issue #17): staleness 0 vs 1",
        "",
        f"`python benchmarks/staleness.py --jobs {args.jobs}`: {steps} steps x {cfg['prompts_per_step']} prompts x "
        f"{cfg['samples_per_prompt']} samples, the task, SFT warm start and hyperparameters of "
        f"benchmarks/learning.py, seeds {seeds}; held-out greedy pass@1 on {cfg['eval_size']} problems after the "
        f"last step. Wall time {saved['wall_seconds'] / 60:.1f} min, load average at the end "
        f"{saved['loadavg'][0]:.2f}.",
        "",
        text,
        "",
    ]
    path = out / "staleness.md"
    analysis = ""
    if path.is_file() and "\n## " in path.read_text():
        analysis = path.read_text()[path.read_text().index("\n## ") :]
    path.write_text("\n".join(head) + analysis)
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
