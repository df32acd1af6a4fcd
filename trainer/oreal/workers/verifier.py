"""`oreal worker verifier`: score committed rollouts with the verifier library, commit verdicts.

Verifier replica i of V scores rollout parts p with p % V == i of every step and writes verdict
part i. As everywhere, a committed verdict part is never rewritten.
"""

from __future__ import annotations

import argparse
import logging

from oreal.bucket import CorruptPartError
from oreal.workers.context import WorkerContext, open_run
from oreal.workers.flags import add_common_args
from oreal.workers.lifecycle import WorkerError, run_worker
from oreal.workers.polling import run_done, wait_for
from oreal.workers.timing import timed_phase

log = logging.getLogger("oreal.worker.verifier")


def register(roles: argparse._SubParsersAction) -> None:
    parser = roles.add_parser("verifier", help="score committed rollouts and commit verdicts")
    add_common_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run_worker("verifier", lambda: run(args))


def build_verifier(spec):
    from oreal.verifier import JudgeConfig, Verifier

    v = spec.verifier
    judge = None
    if v.judge is not None:
        judge = JudgeConfig(
            endpoint=v.judge.endpoint, model=v.judge.model, timeout_seconds=v.judge.timeout_seconds
        )
    return Verifier(timeout_seconds=v.timeout_seconds, workers=v.workers, judge=judge)


def score(verifier, samples):
    """Verdict records (oreal.trajectory.Verdict) for rollout samples, in order."""
    from oreal.trajectory import Verdict

    judgements = verifier.verify_batch([(s.gold, s.response_text, s.truncated) for s in samples])
    return [
        Verdict(s.step, s.prompt_id, s.sample_index, **j.as_dict())
        for s, j in zip(samples, judgements, strict=True)
    ]


def my_rollout_parts(rollout_replicas: int, index: int, replicas: int) -> list[int]:
    return [p for p in range(rollout_replicas) if p % replicas == index]


def read_parts(ctx: WorkerContext, step: int, parts: list[int]):
    samples = []
    for part in parts:
        try:
            samples.extend(ctx.bucket.read_rollouts(step, part=part))
        except CorruptPartError as err:
            # Withdraw the bad part so its rollout replica regenerates it; try again later.
            log.warning("%s", err)
            ctx.bucket.invalidate_part("rollouts", step, part)
            return None
    return samples


def run(args: argparse.Namespace) -> int:
    ctx = open_run(args, "verifier")
    if args.replicas != ctx.spec.verifier.replicas:
        raise WorkerError(
            f"--replicas {args.replicas} does not match spec.verifier.replicas ({ctx.spec.verifier.replicas})"
        )
    parts = my_rollout_parts(ctx.spec.rollout.replicas, args.index, args.replicas)
    verifier = build_verifier(ctx.spec)
    try:
        for step in range(ctx.spec.algorithm.steps):
            if args.index in ctx.bucket.verdict_parts_committed(step):
                ctx.bucket.commit_verdicts(step, args.replicas)
                continue
            if not verify_part(ctx, verifier, step, parts, args):
                log.info("run is done")
                return 0
        # Stay until the run is done: a pod that exits is restarted by Kubernetes and counted
        # against spec.maxRestarts.
        if not args.exit_after_last_step:
            wait_for(ctx, "the end of the run", lambda: run_done(ctx.bucket))
            log.info("run is done")
    finally:
        verifier.close()
    return 0


def verify_part(ctx: WorkerContext, verifier, step: int, parts: list[int], args: argparse.Namespace) -> bool:
    """Score this replica's share of `step` and commit its verdicts; False if the run ended first."""
    bucket, rollout_replicas = ctx.bucket, ctx.spec.rollout.replicas
    timings: dict[str, float] = {}
    samples = None
    while samples is None:  # None: a corrupt rollout part was withdrawn; wait for it again
        with timed_phase("wait", timings):

            def ready() -> bool:
                # Any replica may commit the rollout step once all its parts are in.
                return bucket.rollouts_committed(step) or bucket.commit_rollouts(step, rollout_replicas)

            if not wait_for(ctx, f"rollouts of step {step}", ready, lambda: run_done(bucket)):
                return False
        with timed_phase("sync", timings):
            samples = read_parts(ctx, step, parts)
    with timed_phase("verify", timings):
        verdicts = score(verifier, samples)
    with timed_phase("sync", timings):
        bucket.write_verdict_part(step, args.index, verdicts)
        bucket.commit_verdicts(step, args.replicas)
    correct = sum(v.correct for v in verdicts)
    bucket.write_timings(
        step, "verifier", args.index, {**timings, "samples": len(verdicts), "correct": correct}
    )
    log.info(
        "step %d part %d: %d/%d correct in %.2fs", step, args.index, correct, len(verdicts), timings["verify"]
    )
    return True
