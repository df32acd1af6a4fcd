"""Steady step time of the quickstart with rollout on-policy (maxStaleness 0) and one version ahead (1).

    python benchmarks/pipeline_staleness.py                    # runs 0, 1, 0, 1 back to back
    python benchmarks/pipeline_staleness.py --order 0 1 --out results.json

Each run is examples/quickstart.yaml (model and prompts prepared by scripts/quickstart.sh) with only
`spec.algorithm.maxStaleness` changed, in a fresh file:// bucket. The runs alternate (0, 1, 0, 1) so
that a drift in the machine's load hits both settings; the 1-minute load average is recorded before
and after each run.

Per run, over the steady steps (step 0 holds the workers' start-up and is left out):
- step time: the trainer's wall time per step (waiting for verdicts included), i.e. the time between
  two committed steps, which is what a run's length is made of;
- serial work: generate (slowest rollout replica) + verify + train + the trainer's save/publish of
  the step; on-policy a step costs about that plus overhead, with staleness 1 the generation of step
  k+1 runs while step k trains, so part of it is hidden;
- hidden = serial work - step time (> 0 only when phases overlap; on a 2-core machine overlapping
  phases also slow each other down, which this figure nets out);
- overhead (staleness 0 only): step time - serial work;
- the same step time without the last step ("mid"): with staleness 1 the last step's answers were
  generated during the step before, so it only trains; steps 1..n-2 each hold exactly one generation
  and one update, the fair per-step figure of a long run.
Target (issue #17): staleness 1 cuts the steady step time by >= 20%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402
import yaml  # noqa: E402

TARGET_CUT = 0.20


def run_once(spec_path: Path, staleness: int, work: Path, threads: int | None = None) -> dict:
    from oreal.runner.local import run_local

    spec = yaml.safe_load(spec_path.read_text())
    spec["spec"]["algorithm"]["maxStaleness"] = staleness
    spec["spec"]["metrics"] = {"port": 0}
    run_spec = work / f"staleness-{staleness}.yaml"
    run_spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_dir = work / f"run-{staleness}"
    shutil.rmtree(run_dir, ignore_errors=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    code = run_local(str(run_spec), bucket_uri=run_dir.as_uri(), metrics_port=0, threads=threads)
    runner_wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the quickstart with maxStaleness {staleness} failed with exit code {code}")
    result = pipeline.analyze(run_dir)
    from oreal.bucket import Bucket

    bucket = Bucket.open(run_dir.as_uri())
    versions = {}
    for step in range(result["steps"]):
        versions[step] = sorted({s.policy_version for s in bucket.read_rollouts(step)})
    stats = [bucket.read_stats(step) or {} for step in range(result["steps"])]
    shutil.rmtree(run_dir, ignore_errors=True)
    steady = result["per_step"][1:]
    for row in steady:
        row["serial"] = row["generate"] + row["verify"] + row["train"] + row["trainer_sync"]
        row["hidden"] = row["serial"] - row["wall"]
    return {
        "staleness": staleness,
        "runner_wall_seconds": round(runner_wall, 1),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "per_step": result["per_step"],
        "policy_versions": versions,
        "step_seconds": statistics.fmean(r["wall"] for r in steady),
        # without the last step too: with staleness 1 its answers were generated during the step
        # before, so it is a train-only drain step; steps 1..n-2 each hold one generation and one update
        "mid_step_seconds": statistics.fmean(r["wall"] for r in steady[:-1]) if len(steady) > 1 else None,
        "generate_seconds": statistics.fmean(r["generate"] for r in steady),
        "train_seconds": statistics.fmean(r["train"] for r in steady),
        "serial_seconds": statistics.fmean(r["serial"] for r in steady),
        "hidden_seconds": statistics.fmean(r["hidden"] for r in steady),
        "mismatch": {
            k: statistics.fmean(s[k] for s in stats if k in s) if any(k in s for s in stats) else None
            for k in (
                "mismatch/abs_logp",
                "mismatch/kl",
                "offpolicy/abs_logp",
                "offpolicy/kl",
                "offpolicy/bounded",
            )
        },
    }


def summary(runs: list[dict]) -> dict:
    out: dict = {}
    for s in sorted({r["staleness"] for r in runs}):
        rs = [r for r in runs if r["staleness"] == s]
        out[s] = {
            key: round(statistics.fmean(r[key] for r in rs), 2)
            for key in (
                "step_seconds",
                "mid_step_seconds",
                "runner_wall_seconds",
                "generate_seconds",
                "train_seconds",
                "serial_seconds",
                "hidden_seconds",
            )
        }
        out[s]["runs"] = len(rs)
    if 0 in out and 1 in out:
        out["step_time_ratio"] = round(out[1]["step_seconds"] / out[0]["step_seconds"], 3)
        out["cut"] = round(1 - out["step_time_ratio"], 3)
        out["mid_step_time_ratio"] = round(out[1]["mid_step_seconds"] / out[0]["mid_step_seconds"], 3)
        # each staleness-1 run against the staleness-0 run just before it (same load, nearly)
        pairs = [
            (a, b) for a, b in zip(runs, runs[1:], strict=False) if (a["staleness"], b["staleness"]) == (0, 1)
        ]
        out["pair_ratios"] = [round(b["step_seconds"] / a["step_seconds"], 3) for a, b in pairs]
        out["pair_mid_ratios"] = [round(b["mid_step_seconds"] / a["mid_step_seconds"], 3) for a, b in pairs]
    return out


def print_run(r: dict) -> None:
    print(
        f"maxStaleness {r['staleness']}: steady step {r['step_seconds']:.1f}s (serial work {r['serial_seconds']:.1f}s, "
        f"hidden {r['hidden_seconds']:.1f}s), runner {r['runner_wall_seconds']:.0f}s, load {r['load_before']:.2f} -> "
        f"{r['load_after']:.2f}, versions per step {r['policy_versions']}",
        flush=True,
    )
    for row in r["per_step"]:
        print(
            f"  step {row['step']}: wall {row['wall']:.1f} = generate {row['generate']:.1f} + verify {row['verify']:.2f}"
            f" + train {row['train']:.1f} + sync {row['trainer_sync']:.1f} (+ {row['wall'] - row['generate'] - row['verify'] - row['train'] - row['trainer_sync']:+.1f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("examples/quickstart.yaml"))
    parser.add_argument("--order", type=int, nargs="+", default=[0, 1, 0, 1])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per worker (default: the runner's, the CPU count)"
    )
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="oreal-staleness-") as tmp:
        for staleness in args.order:
            runs.append(run_once(args.spec, staleness, Path(tmp), args.threads))
            print_run(runs[-1])
    result = {"runs": runs, "summary": summary(runs), "cpus": os.cpu_count()}
    s = result["summary"]
    if "cut" in s:
        print(
            f"steady step time: staleness 0 {s[0]['step_seconds']:.1f}s, staleness 1 {s[1]['step_seconds']:.1f}s, "
            f"ratio {s['step_time_ratio']:.3f} (cut {s['cut']:.1%}; target >= {TARGET_CUT:.0%}: "
            f"{'met' if s['cut'] >= TARGET_CUT else 'NOT met'}); pairs {s['pair_ratios']}; without the last "
            f"(drain) step: ratio {s['mid_step_time_ratio']:.3f}, pairs {s['pair_mid_ratios']}"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
