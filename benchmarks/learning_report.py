"""learning.md, learning.png and learning_rm.png from the runs of benchmarks/learning.py.

The reading of each experiment is written by hand in OUT/learning_reading.md, one section per
experiment ("## 1", "## 2", ..., "## Conclusion"); it is spliced in under that experiment's tables,
so re-running the benchmark rewrites the numbers and keeps the reading.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import learning as lb
import torch

DIAG_STATS = lb.TRACKED
PROBE_KEYS = (
    ("omega_pos/q1", "ω+ q1"),
    ("omega_pos/q4", "ω+ q4"),
    ("omega_neg/q1", "ω- q1"),
    ("omega_neg/q4", "ω- q4"),
    ("omega_neg/before_error", "ω- before error"),
    ("omega_neg/from_error", "ω- from error"),
)


def _runs(data: dict, task: str, method: str) -> list[dict]:
    return [r for r in data["runs"] if r["task"] == task and r["method"] == method]


def summarize(runs: list[dict]) -> dict[str, float]:
    finals = [100 * r["curve"][-1][1] for r in runs]
    return {
        "final_mean": statistics.fmean(finals),
        "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "finals": finals,
        "best_mean": statistics.fmean(100 * max(v for _, v in r["curve"]) for r in runs),
        "start": 100 * runs[0]["curve"][0][1],
        "seconds": sum(r["seconds"] for r in runs),
        "cpu_seconds": sum(r.get("cpu_seconds", r["seconds"]) for r in runs),
        "seeds": len(runs),
    }


def best_baseline(data: dict, task: str) -> tuple[str, dict] | None:
    found = [(m, summarize(_runs(data, task, m))) for m in lb.BASELINES if _runs(data, task, m)]
    return max(found, key=lambda x: x[1]["final_mean"]) if found else None


def results_table(data: dict, task: str, methods: list[str]) -> list[str]:
    base = best_baseline(data, task)
    lines = [
        "| method | user option | held-out pass@1 at end (mean ± sd) | seeds | best during run | "
        f"vs best baseline{f' ({lb.METHODS[base[0]].label})' if base else ''} | CPU time |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        rs = _runs(data, task, m)
        if not rs:
            continue
        s = summarize(rs)
        delta = f"{s['final_mean'] - base[1]['final_mean']:+.1f}" if base else "–"
        seeds = " / ".join(f"{x:.1f}" for x in s["finals"])
        option = "yes" if lb.METHODS[m].user_option else "diagnostic"
        lines.append(
            f"| {lb.METHODS[m].label} | {option} | **{s['final_mean']:.1f} ± {s['final_std']:.1f}** | {seeds} "
            f"| {s['best_mean']:.1f} | {delta} | {s['cpu_seconds'] / 60:.1f} min |"
        )
    return lines


def diagnostics_table(data: dict, task: str, methods: list[str]) -> list[str]:
    """Mean over seeds of the trainer's stats over the last quarter of the steps."""
    lines = ["| method | " + " | ".join(DIAG_STATS) + " |", "|---|" + "---|" * len(DIAG_STATS)]
    for m in methods:
        rs = _runs(data, task, m)
        if not rs:
            continue
        cells = []
        for k in DIAG_STATS:
            vals = [
                x for r in rs for x in r["stats"][k][-max(1, len(r["stats"][k]) // 4) :] if math.isfinite(x)
            ]
            cells.append(f"{statistics.fmean(vals):.3g}" if vals else "–")
        lines.append(f"| {lb.METHODS[m].label} | " + " | ".join(cells) + " |")
    return lines


def probe_table(data: dict, task: str, methods: list[str]) -> list[str]:
    """The reward model on held-out SFT samples: AUC at the start, at the first policy step, at the end;
    ω by quarter of the response and around the first error, at the end (mean over seeds)."""
    lines = [
        "| method | AUC start | AUC end | " + " | ".join(label for _, label in PROBE_KEYS) + " |",
        "|---|---|---|" + "---|" * len(PROBE_KEYS),
    ]
    any_row = False
    for m in methods:
        rs = [r for r in _runs(data, task, m) if r.get("rm_probe")]
        if not rs:
            continue
        any_row = True

        def mean(key: str, at: int, rs=rs) -> str:
            xs = [r["rm_probe"][at][1].get(key, float("nan")) for r in rs]
            xs = [x for x in xs if math.isfinite(x)]
            return f"{statistics.fmean(xs):.3f}" if xs else "–"

        cells = [mean("auc", 0), mean("auc", -1)] + [mean(k, -1) for k, _ in PROBE_KEYS]
        lines.append(f"| {lb.METHODS[m].label} | " + " | ".join(cells) + " |")
    return lines if any_row else []


def goal_lines(data: dict) -> list[str]:
    """Per task: the best user-settable OREAL row with token weights on vs the best baseline."""
    out = []
    for task in sorted({r["task"] for r in data["runs"]}):
        base = best_baseline(data, task)
        rows = [
            (m, summarize(_runs(data, task, m)))
            for m, meth in lb.METHODS.items()
            if meth.user_option and meth.token_weighted and _runs(data, task, m)
        ]
        if not base or not rows:
            continue
        m, s = max(rows, key=lambda x: x[1]["final_mean"])
        gap = s["final_mean"] - base[1]["final_mean"]
        verdict = "≥ 3 points better" if gap >= 3 else ("at least as good" if gap >= 0 else "below")
        out.append(
            f"- {task}: best full OREAL a user can set: {lb.METHODS[m].label} {s['final_mean']:.1f} ± "
            f"{s['final_std']:.1f} vs {lb.METHODS[base[0]].label} {base[1]['final_mean']:.1f} ± "
            f"{base[1]['final_std']:.1f}: {gap:+.1f} points ({verdict})."
        )
    return out


def reading(out: Path) -> dict[str, str]:
    path = out / "learning_reading.md"
    if not path.is_file():
        return {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def experiment_methods(exp: lb.Experiment) -> list[str]:
    return list(dict.fromkeys([*exp.compare, *exp.methods]))


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = [lb.EXPERIMENTS[e] for e in data["experiments"]]
    cols = min(3, len(exps))
    rows = -(-len(exps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.flat[len(exps) :]:
        ax.axis("off")
    for ax, exp in zip(axes.flat, exps, strict=False):
        for m in experiment_methods(exp):
            rs = _runs(data, exp.task, m)
            if not rs:
                continue
            steps = [s for s, _ in rs[0]["curve"]]
            vals = torch.tensor([[100 * v for _, v in r["curve"]] for r in rs])
            mean = vals.mean(0)
            std = vals.std(0) if len(rs) > 1 else torch.zeros(len(steps))
            style = "--" if m in exp.compare else "-"
            ax.plot(steps, mean, style, marker="o", ms=3, label=lb.METHODS[m].label)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.12)
        ax.set(xlabel="RL step", ylabel="held-out pass@1 (%), mean ± sd", title=f"{exp.title} ({exp.task})")
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if exp.task == "chain" else "lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_probe(data: dict, path: Path) -> bool:
    """Per task: the reward model's held-out AUC over the run, and ω- before / from the first error at
    the end of the run (dashed lines in the AUC panel: rows whose ω are not the reward model's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in data["runs"] if r.get("rm_probe")})
    if not tasks:
        return False
    fig, axes = plt.subplots(len(tasks), 2, figsize=(15, 4.8 * len(tasks)), squeeze=False)
    for (ax, bars), task in zip(axes, tasks, strict=True):
        methods = [m for m in lb.METHODS if any(r.get("rm_probe") for r in _runs(data, task, m))]
        before, after = [], []
        for m in methods:
            rs = [r for r in _runs(data, task, m) if r.get("rm_probe")]
            steps = [s for s, _ in rs[0]["rm_probe"]]
            auc = torch.tensor([[p["auc"] for _, p in r["rm_probe"]] for r in rs]).nanmean(0)
            style = "--" if lb.METHODS[m].weights else "-"
            ax.plot(steps, auc, style, marker="o", ms=3, label=lb.METHODS[m].label)
            end = [r["rm_probe"][-1][1] for r in rs]
            before.append(statistics.fmean(p.get("omega_neg/before_error", math.nan) for p in end))
            after.append(statistics.fmean(p.get("omega_neg/from_error", math.nan) for p in end))
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set(xlabel="RL step", ylabel="held-out AUC", title=f"{task}: reward model on held-out SFT samples")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
        y = torch.arange(len(methods)).float()
        bars.barh(y - 0.2, before, height=0.4, label="ω- before the first error")
        bars.barh(y + 0.2, after, height=0.4, label="ω- from the first error on")
        bars.set_yticks(y.tolist(), [lb.METHODS[m].label for m in methods], fontsize=7)
        bars.set(xlabel="mean ω- on wrong held-out answers, end of run (the reward model's weights)")
        bars.set_title(f"{task}: where ω- falls", fontsize=10)
        bars.grid(alpha=0.3, axis="x")
        bars.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(data: dict, out: Path) -> str:
    """Write learning.md and the figures into `out`; returns the goal lines."""
    notes = reading(out)
    plot(data, out / "learning.png")
    has_probe = plot_probe(data, out / "learning_rm.png")
    chain = data["configs"].get("chain") or next(iter(data["configs"].values()))
    md = [
        "# Learning benchmark: the OREAL ablation in miniature (issue #14)",
        "",
        f"Shared settings (every row): {chain['steps']} RL steps x {chain['prompts_per_step']} prompts x "
        f"{chain['samples_per_prompt']} samples, sampling T = 1, top-p {chain['top_p']}; policy lr "
        f"{chain['lr']} -> {chain['min_lr']} (cosine), reward-model lr {chain['reward_model_lr']}, weight "
        f"decay {chain['weight_decay']}, reward-model-only warm-up {chain['warmup_steps']} steps (full "
        f"OREAL), OREAL keeps 1 correct + 1 wrong per group unless a row says otherwise; held-out set of "
        f"{chain['eval_size']} problems, greedy pass@1 checked by `oreal.verifier.Verifier`; "
        f"3 seeds from the same SFT start. Wall time {data['wall_seconds'] / 60:.1f} min with "
        f"{data['jobs']} runs in parallel (1 thread each); the runs used "
        f"{sum(r.get('cpu_seconds', 0) for r in data['runs']) / 60:.0f} CPU-minutes; preparation (SFT "
        f"starts, SFT samples, offline reward-model fits) {data['prepare_seconds'] / 60:.1f} min"
        f"{' (all from the cache)' if data['prepare_seconds'] < 30 else ''}. Reproduce: "
        "`python benchmarks/learning.py --jobs 2`; earlier rounds (before issue #14): "
        "[learning_analysis.md](learning_analysis.md).",
        "",
    ]
    for task, cfg in data["configs"].items():
        sft = data["sft"].get(task, {})
        md.append(
            f"- task `{task}`: {lb.lt.describe(lb.lt.TaskConfig(**cfg['task']))}; tiny Llama (hidden "
            f"{cfg['task']['hidden_size']}, {cfg['task']['layers']} layers); SFT stopped at validation "
            f"pass@1 {sft.get('validation_pass_at_1', math.nan):.2f} after {sft.get('steps', '?')} steps."
        )
    for task, fit in data.get("offline_reward_model", {}).items():
        held = fit.get("held_out", {})
        md.append(
            f"- offline reward model (`{task}`): `oreal reward-model fit` on {fit['samples']} SFT samples "
            f"({fit['train_samples']} after 1+1 balancing and the split), {fit['config']['epochs']} epochs, "
            f"held-out AUC {held.get('auc', math.nan):.3f} on {fit['held_out_samples']} samples."
        )
    md += ["", "## Goal", "", *goal_lines(data), ""]
    if "Goal" in notes:
        md += [notes["Goal"], ""]
    md += ["![held-out pass@1](learning.png)", ""]
    if has_probe:
        md += ["![reward model](learning_rm.png)", ""]
    for e in data["experiments"]:
        exp = lb.EXPERIMENTS[e]
        methods = experiment_methods(exp)
        md += [f"## {exp.title} (task `{exp.task}`)", "", *results_table(data, exp.task, methods), ""]
        md += ["Trainer statistics, last quarter of the steps (mean over seeds):", ""]
        md += [*diagnostics_table(data, exp.task, methods), ""]
        probe = probe_table(data, exp.task, methods)
        if probe:
            md += ["Reward model on held-out SFT samples (q1/q4: first/last quarter of the response):", ""]
            md += [*probe, ""]
        if e in notes:
            md += [notes[e], ""]
    if "Conclusion" in notes:
        md += ["## Conclusion", "", notes["Conclusion"], ""]
    (out / "learning.md").write_text("\n".join(md))
    return "\n".join(goal_lines(data))
