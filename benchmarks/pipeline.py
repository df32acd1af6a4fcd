"""Pipeline overhead of a local run: the share of wall time outside generate, verify and train.

    python benchmarks/pipeline.py                          # run examples/quickstart.yaml, then analyse
    python benchmarks/pipeline.py --analyze runs/quickstart  # analyse a finished run's bucket

Per step the useful work is rollout generation (slowest replica), verification (slowest
replica) and the trainer's update; the rest of the step's wall time (trainer step start to
state.json update) is overhead: bucket I/O, policy save/publish/download/load, waiting and
polling. Target: overhead <= 10% of the steady-state wall time. Process start-up (imports, model
loading) is reported separately, since it is paid once per run, not per step.

Second figure: policy publish (trainer -> bucket) and download + load (bucket -> hf engine) time
against the bytes moved, for the run's initial policy.

Measured on the quickstart (2-core CPU, file:// bucket, SmolLM2-135M policy trained in fp32 under
bf16 autocast), 2026-11-28 (fourth session), idle machine, the same quickstart before and after:
- before (commit 495d776: fp32 policy copied into the bucket and out again each step; the last
  step wrote a full checkpoint of policy, reward model and both AdamW states, ~3.2 GB): overhead
  14.3% of steady-state wall time, 8.2% without the final checkpoint (9.6 s).
- after (policy published in bf16, the compute dtype, and hard-linked into a local bucket and into
  the rollout's folder; the last step saves only the final weights under final/, 1.1 GB):
  6.4% and 6.0% in two runs (4.8% without the final save of 1.8-2.2 s).
Per step the trainer's save + publish fell from ~1.2-2.6 s to 0.3-1.2 s, the rollout's download
+ in-place load from 0.6-2.2 s to 0.3-0.6 s. Policy sync of the fp32 541.6 MB folder: publish
0.23 s by copy (1.0x a plain copy) and 0.13 s by link (checksum only); the same for download;
first hf engine load 2.0 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from oreal.bucket import Bucket

TARGET_OVERHEAD = 0.10


def _timings(bucket: Bucket, step: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for (role, _index), data in bucket.read_timings(step).items():
        for key, value in data.items():
            if isinstance(value, (int, float)):
                k = f"{role}/{key}"
                out[k] = max(out.get(k, 0.0), float(value))
    return out


def analyze(run_dir: Path) -> dict:
    bucket = Bucket.open(run_dir.resolve().as_uri())
    steps = bucket.list_stats()
    if not steps:
        raise SystemExit(f"{run_dir}: no finished steps")
    rows = []
    for step in steps:
        stats = bucket.read_stats(step) or {}
        t = _timings(bucket, step)
        work = (
            t.get("rollout/generate", 0.0)
            + t.get("verifier/verify", 0.0)
            + float(stats.get("time/train", 0.0))
            + float(stats.get("time/eval", 0.0))  # spec.evaluation, when enabled, is useful work too
        )
        wall = float(stats.get("wall_seconds", 0.0))
        rows.append(
            {
                "step": step,
                "wall": wall,
                "generate": t.get("rollout/generate", 0.0),
                "verify": t.get("verifier/verify", 0.0),
                "train": float(stats.get("time/train", 0.0)),
                "trainer_sync": float(stats.get("time/sync", 0.0)),
                "checkpoint": float(stats.get("time/checkpoint", 0.0)),
                "rollout_sync": t.get("rollout/sync", 0.0),
                "overhead": max(0.0, wall - work),
            }
        )
    # Step 0's wall time includes the workers' start-up (imports, first model load): report it apart.
    steady = rows[1:] if len(rows) > 1 else rows
    wall = sum(r["wall"] for r in steady)
    overhead = sum(r["overhead"] for r in steady)
    # Checkpoints (every checkpoint.every steps; the final weights at the last step) are overhead
    # too; a short run pays its final save over very few steps, so the share without them is
    # reported as well.
    checkpoint = sum(r["checkpoint"] for r in steady)
    return {
        "run": str(run_dir),
        "steps": len(rows),
        "per_step": rows,
        "steady_state_wall_seconds": round(wall, 2),
        "steady_state_overhead_seconds": round(overhead, 2),
        "overhead_share": round(overhead / wall, 4) if wall else None,
        "checkpoint_seconds": round(checkpoint, 2),
        "overhead_share_without_checkpoints": (
            round((overhead - checkpoint) / (wall - checkpoint), 4) if wall > checkpoint else None
        ),
        "overhead_share_target": TARGET_OVERHEAD,
        "first_step_wall_seconds": round(rows[0]["wall"], 2),
    }


def policy_sync(model: Path) -> dict:
    """Publish + download + hf load of `model` through a fresh file:// bucket.

    Twice: copying the files (how v0, the user's own folder, is published, and how any
    object-store bucket works) and hard-linking them (`link=True`: how a local run's trainer
    publishes each new version and how its rollout worker takes it).
    """
    from oreal.engines.hf import HFEngine

    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    mb = size / 1e6
    out: dict = {"policy_mb": round(mb, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        copy_start = time.perf_counter()
        shutil.copytree(model, Path(tmp) / "plain-copy")
        copy = time.perf_counter() - copy_start
        out["plain_copy_seconds"] = round(copy, 2)
        for mode, link in (("copy", False), ("link", True)):
            bucket = Bucket.open(Path(tmp, f"bucket-{mode}").as_uri())
            source = Path(tmp) / "plain-copy"  # never rewritten in place: safe to link
            start = time.perf_counter()
            bucket.publish_policy(1, source, link=link)
            publish = time.perf_counter() - start
            start = time.perf_counter()
            local = bucket.download_policy(1, Path(tmp) / f"download-{mode}", link=link)
            download = time.perf_counter() - start
            out[f"{mode}/publish_seconds"] = round(publish, 2)
            out[f"{mode}/publish_mb_per_s"] = round(mb / publish, 1)
            out[f"{mode}/download_seconds"] = round(download, 2)
            out[f"{mode}/download_mb_per_s"] = round(mb / download, 1)
        start = time.perf_counter()
        HFEngine(batch_size=1).load(local, 1)
        out["engine_load_seconds"] = round(time.perf_counter() - start, 2)
    out["copy/publish_vs_plain_copy"] = round(out["copy/publish_seconds"] / copy, 2) if copy else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/quickstart.yaml")
    parser.add_argument("--analyze", type=Path, default=None, help="analyse this finished run folder instead")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run folder (GBs) instead of deleting it"
    )
    args = parser.parse_args()
    run_dir = args.analyze
    if run_dir is None:
        from oreal.runner.local import run_local
        from oreal.spec import load_run

        run = load_run(args.spec)
        run_dir = Path(tempfile.mkdtemp(prefix="oreal-pipeline-")) / run.metadata.name
        start = time.perf_counter()
        code = run_local(args.spec, bucket_uri=run_dir.as_uri(), metrics_port=0)
        if code != 0:
            return code
        total = time.perf_counter() - start
    else:
        total = None
    result = analyze(run_dir)
    result["runner_wall_seconds"] = round(total, 2) if total else None
    spec_text = Bucket.open(run_dir.resolve().as_uri()).read_spec() or ""
    from oreal.spec import parse_run

    policy = Path(parse_run(spec_text).spec.model.policy)
    result["policy_sync"] = policy_sync(policy)
    for row in result.pop("per_step"):
        print(
            f"step {row['step']}: wall {row['wall']:.1f}s = generate {row['generate']:.1f} + verify "
            f"{row['verify']:.2f} + train {row['train']:.1f} + overhead {row['overhead']:.1f} "
            f"(trainer save/publish {row['trainer_sync']:.1f} incl. checkpoint {row['checkpoint']:.1f}, "
            f"rollout download/load/write {row['rollout_sync']:.1f})"
        )
    share = result["overhead_share"]
    print(
        f"overhead outside generate/verify/train: {share:.1%} of steady-state wall time "
        f"(target <= {TARGET_OVERHEAD:.0%}: {'met' if share <= TARGET_OVERHEAD else 'NOT met'}); "
        f"{result['overhead_share_without_checkpoints'] or 0.0:.1%} without the "
        f"{result['checkpoint_seconds']:.1f} s of checkpoints"
    )
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if args.analyze is None:
        if args.keep:
            print(f"run folder kept: {run_dir}")
        else:
            shutil.rmtree(run_dir.parent, ignore_errors=True)  # the temporary folder made above
    return 0


if __name__ == "__main__":
    sys.exit(main())
