"""`oreal worker trainer`: one OREAL step per committed verdict step, then policy v(k+1).

Per step k: wait until verdicts of step k are committed, join them with the rollouts, run one
`OREALTrainer.train_step`, publish policy v(k+1), write stats/step-k.json, checkpoint when due
(every `checkpoint.every` steps; the last step saves the final weights under final/ instead) and
update state.json; `done` is set at the last step. On start it publishes v0 (the initial policy)
if absent and resumes from the newest committed checkpoint, replaying later steps from the
bucket's data (already published policies and stats are kept as they are, so every step's data
is committed exactly once).

Under torchrun (WORLD_SIZE > 1) every rank runs this loop and reads the same data; rank 0 alone
writes policies, stats and state.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

from oreal import metrics
from oreal.bucket.manifest import FileEntry
from oreal.step_outcome import describe_step, step_outcome
from oreal.workers import report
from oreal.workers.context import WorkerContext, open_run
from oreal.workers.flags import add_common_args
from oreal.workers.lifecycle import WorkerError, run_worker, set_threads
from oreal.workers.polling import run_done, wait_for
from oreal.workers.timing import timed_phase

log = logging.getLogger("oreal.worker.trainer")


def register(roles: argparse._SubParsersAction) -> None:
    parser = roles.add_parser("trainer", help="train on committed verdicts and publish new policies")
    add_common_args(parser, replicated=False)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run_worker("trainer", lambda: run(args))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def resolve_model(uri: str | None, local: Path, what: str, ctx: WorkerContext) -> Path | None:
    """A local folder for a model given as a path or a bucket URI (downloaded once)."""
    if uri is None:
        return None
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not (path / "config.json").is_file():
            raise WorkerError(f"spec.model.{what}: {path} is not a model folder (no config.json)")
        return path
    import fsspec

    if not (local / "config.json").is_file():
        fs, root = fsspec.core.url_to_fs(uri, **ctx.location.fsspec_options(uri))
        try:
            fs.get(root.rstrip("/") + "/", str(local) + "/", recursive=True)
        except (FileNotFoundError, OSError) as err:
            raise WorkerError(f"spec.model.{what}: cannot download {uri}: {err}") from None
    if not (local / "config.json").is_file():
        raise WorkerError(f"spec.model.{what}: {uri} is not a model folder (no config.json)")
    return local


def gather(entries: list[FileEntry]) -> list[FileEntry]:
    """Every rank's uploaded files (rank 0 commits the manifest of all of them)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        everyone: list[list[FileEntry]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(everyone, entries)
        merged = {e.path: e for part in everyone for e in part}
        return list(merged.values())
    return entries


def save_checkpoint(ctx: WorkerContext, trainer, step: int, saved_policy: Path | None = None) -> None:
    """`saved_policy`: the folder of the policy just published for these weights (linked, not re-saved)."""
    local = ctx.work_dir / f"checkpoint-rank{rank()}"
    shutil.rmtree(local, ignore_errors=True)
    trainer.save_checkpoint(local, saved_policy=saved_policy)
    entries = gather(ctx.bucket.checkpoints.upload(step, local, move=True))  # local is discarded next
    if rank() == 0:
        ctx.bucket.checkpoints.commit(step, entries)
        ctx.bucket.checkpoints.prune(ctx.spec.checkpoint.keep)
    shutil.rmtree(local, ignore_errors=True)


def save_final(ctx: WorkerContext, trainer, step: int, saved_policy: Path | None = None) -> None:
    """The last step's policy and reward model (full precision, HF format) under final/.

    No optimiser states: a finished run is not resumed, and one interrupted before `done` resumes
    from the newest checkpoint and replays. An earlier final/ is withdrawn before it is replaced
    (Checkpoints upload).
    """
    local = ctx.work_dir / f"final-rank{rank()}"
    shutil.rmtree(local, ignore_errors=True)
    trainer.save_weights(local, saved_policy=saved_policy)
    entries = gather(ctx.bucket.checkpoints.upload_final(local, move=True))
    if rank() == 0:
        ctx.bucket.checkpoints.commit_final(step, entries)
    shutil.rmtree(local, ignore_errors=True)


def resume(ctx: WorkerContext, trainer) -> int:
    """Load the newest committed checkpoint that reads back intact; returns the first step to train.

    A checkpoint whose files do not match its manifest is skipped for the next older one (every
    rank sees the same bytes, so all make the same choice); with none left the run starts over
    from step 0 and replays the committed steps. So is a checkpoint whose step has no stats yet: a
    step is saved before it is committed (train_one), and a trainer stopped in between must train
    that step again, or its stats would never be written.
    """
    from oreal.bucket import CorruptPartError

    local = ctx.work_dir / "resume"
    for step in reversed(ctx.bucket.checkpoints.committed_steps()):
        if ctx.bucket.read_stats(step) is None:
            log.info("checkpoint of step %d: the step was not committed; trying an older one", step)
            continue
        shutil.rmtree(local, ignore_errors=True)
        try:
            ctx.bucket.checkpoints.download(step, local)
        except CorruptPartError as err:
            log.warning("checkpoint of step %d is damaged (%s); trying an older one", step, err)
            continue
        start = trainer.load_checkpoint(local)
        shutil.rmtree(local, ignore_errors=True)
        log.info("resumed from the checkpoint of step %d; next step %d", step, start)
        return start
    return 0


def prune_policies(ctx: WorkerContext, newest: int) -> None:
    """Keep v0, and the newest max(checkpoint.keep, maxStaleness + 1) versions."""
    keep = max(ctx.spec.checkpoint.keep, ctx.spec.algorithm.max_staleness + 1)
    for version in ctx.bucket.policy_versions():
        if 0 < version <= newest - keep:
            ctx.bucket.delete_policy(version)


def step_line(stats: dict) -> str:
    """The log line's body: pass rate, then the policy loss or why the step had none."""
    parts = [f"pass rate {stats['pass_rate']:.3f}"] if "pass_rate" in stats else []
    loss = stats.get("loss/policy")
    parts.append(describe_step(stats) or (f"loss {loss:.4f}" if loss is not None else "no policy loss"))
    if "time/train" in stats:
        parts.append(f"train {stats['time/train']:.1f}s")
    return ", ".join(parts)


def record_metrics(stats: dict, count_empty: bool = True) -> None:
    """The last-step gauges; a step without a policy update is counted once (not when replayed)."""
    outcome = step_outcome(stats)
    if outcome != "trained" and count_empty:
        metrics.TRAINER_EMPTY_STEPS.labels(outcome).inc()
    metrics.TRAINER_LAST_STEP.record(stats)


def step_timings(bucket, step: int) -> dict[str, float]:
    """Generate/verify seconds that the other workers reported for this step (max over replicas)."""
    out: dict[str, float] = {}
    for record in bucket.read_timings(step).values():
        for key in ("generate", "verify"):
            if key in record:
                out[f"time/{key}"] = max(out.get(f"time/{key}", 0.0), float(record[key]))
    return out


def evaluate_datasets(ctx: WorkerContext, step: int) -> dict[str, float]:
    """spec.evaluation: greedy pass@1 of policy v(step+1) on each dataset, kept in the bucket."""
    from oreal.data import DataError
    from oreal.evaluation import EvalError, evaluate_policy

    out: dict[str, float] = {}
    for uri in ctx.spec.evaluation.datasets:
        name = Path(uri.rstrip("/")).stem.lstrip(".") or "dataset"  # a plain key name in eval/
        try:
            summary = evaluate_policy(
                ctx.work_dir / "policy-out",
                uri,
                ctx.spec,
                ctx.work_dir / "eval" / name,
                storage_options=ctx.location.fsspec_options(uri),
            )
        except (DataError, EvalError) as err:
            log.warning("evaluation on %s skipped: %s", uri, err)
            continue
        ctx.bucket.write_eval(step, name, summary)
        out[f"eval/{name}/pass@1"] = float(summary["pass@1"])
        log.info("step %d: pass@1 %.3f on %s", step, summary["pass@1"], name)
    return out


def train_one(ctx: WorkerContext, trainer, step: int) -> None:
    """One step: wait for its verdicts, train, publish v(step+1), checkpoint when due, commit the step."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    scored = read_scored_step(ctx, step, timings)
    # Decided before training: no rank can have published v(k+1) yet (save_policy is collective),
    # so every rank takes the same branch below.
    replay = ctx.bucket.policy_committed(step + 1)
    with timed_phase("train", timings):
        stats = trainer.train_step(scored, step)
    published = None if replay else publish_policy(ctx, trainer, step, timings)
    # A checkpoint reuses the files just published when they hold the weights losslessly.
    save_when_due(ctx, trainer, step, published if trainer.published_dtype is None else None, timings)
    if rank() == 0:
        commit_step(ctx, step, stats, timings, samples=len(scored), started=started, replay=replay)


def read_scored_step(ctx: WorkerContext, step: int, timings: dict[str, float]):
    """Wait until the step's verdicts are committed (any trainer may commit them), then join them."""
    from oreal.trajectory import join_verdicts

    bucket, replicas = ctx.bucket, ctx.spec.verifier.replicas
    with timed_phase("wait", timings):
        wait_for(
            ctx,
            f"verdicts of step {step}",
            lambda: bucket.verdicts_committed(step) or bucket.commit_verdicts(step, replicas),
        )
    with timed_phase("sync", timings):
        return join_verdicts(bucket.read_rollouts(step), bucket.read_verdicts(step))


def publish_policy(ctx: WorkerContext, trainer, step: int, timings: dict[str, float]) -> Path:
    """Save and publish policy v(step+1); returns the local folder it was saved to.

    Policies are published in the rollout's compute dtype (bf16 under autocast: half the bytes).
    """
    out = ctx.work_dir / "policy-out"
    with timed_phase("sync", timings):
        shutil.rmtree(out, ignore_errors=True)  # new files each step: the bucket may hard-link them
        trainer.save_policy(out, dtype=trainer.published_dtype)
        if rank() == 0:
            ctx.bucket.publish_policy(step + 1, out, link=True)
    return out


def save_when_due(
    ctx: WorkerContext, trainer, step: int, reuse: Path | None, timings: dict[str, float]
) -> None:
    """The final weights after the last step, a resumable checkpoint every checkpoint.every steps."""
    spec = ctx.spec
    last = step == spec.algorithm.steps - 1
    if not (last or (step + 1) % spec.checkpoint.every == 0):
        return
    start = time.perf_counter()
    with timed_phase("sync", timings):
        if last:
            save_final(ctx, trainer, step, saved_policy=reuse)
        else:
            save_checkpoint(ctx, trainer, step, saved_policy=reuse)
    timings["checkpoint"] = time.perf_counter() - start  # part of sync, reported apart


def commit_step(
    ctx: WorkerContext,
    step: int,
    stats: dict,
    timings: dict[str, float],
    *,
    samples: int,
    started: float,
    replay: bool,
) -> None:
    """Rank 0: the step's stats (evaluation included when due) into the bucket, metrics, /status,
    policy pruning, then state.json."""
    from oreal.bucket import RunState

    bucket, spec = ctx.bucket, ctx.spec
    last = step == spec.algorithm.steps - 1
    stats = {k: float(v) for k, v in stats.items()}
    if not replay:
        stats |= evaluate_when_due(ctx, step, timings)
    stats |= {f"time/{k}": v for k, v in timings.items()}
    stats |= step_timings(bucket, step)
    stats |= {"step": step, "policy_version": step + 1, "samples": samples}
    stats["wall_seconds"] = time.perf_counter() - started
    first = bucket.read_stats(step) is None  # a replayed step's stats were committed before
    if first:
        bucket.write_stats(step, stats)
    record_metrics(stats, count_empty=first)
    report.BOARD.committed(step, stats, total_steps=spec.algorithm.steps)  # /status for the operator
    metrics.TRAINER_STEP.set(step)
    prune_policies(ctx, step + 1)
    state = bucket.read_state()
    if state is None or state.step < step or (last and not state.done):
        bucket.write_state(RunState(step=step, policy_version=step + 1, done=last))
    log.info("step %d: %s%s", step, step_line(stats), " (replayed)" if replay else "")


def evaluate_when_due(ctx: WorkerContext, step: int, timings: dict[str, float]) -> dict[str, float]:
    """spec.evaluation every N steps and after the last one; {} when not due."""
    every, last = ctx.spec.evaluation.every, step == ctx.spec.algorithm.steps - 1
    if not every or not ((step + 1) % every == 0 or last):
        return {}
    start = time.perf_counter()
    results = evaluate_datasets(ctx, step)
    timings["eval"] = time.perf_counter() - start
    return results


def run(args: argparse.Namespace) -> int:
    from oreal.training import OREALTrainer
    from oreal.training.distributed import shutdown

    ctx = open_run(args, "trainer")
    if rank() != 0:
        metrics.drop_trainer_gauges()  # rank 0 alone records each step's results
    if run_done(ctx.bucket):  # e.g. a pod restarted after the end: nothing to train or replay
        log.info("run is already done")
        return 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks on one node must not share scratch files
        ctx.work_dir = ctx.work_dir / f"rank-{rank()}"
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    set_threads()
    spec, bucket = ctx.spec, ctx.bucket
    m = spec.model
    initial = resolve_model(m.policy, ctx.work_dir / "initial-policy", "policy", ctx)
    reference = resolve_model(m.reference, ctx.work_dir / "reference", "reference", ctx)
    reward = resolve_model(m.token_reward_model, ctx.work_dir / "reward-model", "tokenRewardModel", ctx)
    if rank() == 0 and not bucket.policy_committed(0):
        with timed_phase("sync"):
            bucket.publish_policy(0, initial)
        log.info("published the initial policy as v0")
    trainer = OREALTrainer(spec, initial, reference_path=reference, reward_model_path=reward)
    start = resume(ctx, trainer)
    if rank() == 0:
        report.BOARD.resumed(ctx.run.metadata.name, spec.algorithm.steps, start)
    for step in range(start, spec.algorithm.steps):
        train_one(ctx, trainer, step)
    shutdown()  # every rank is done with collectives; only bookkeeping is left
    if rank() == 0:
        from oreal.bucket import RunState

        state = bucket.read_state()
        if state is None or not state.done:
            last = spec.algorithm.steps - 1
            bucket.write_state(RunState(step=last, policy_version=last + 1, done=True))
    log.info("run complete")
    return 0
