"""`oreal worker rollout`: sample answers for this replica's share of every step's prompts.

Per step k: wait until a policy version v with k - maxStaleness <= v <= k is committed, load it
(reusing the engine where possible), take shard `index` of step k's prompts (a pure function of
(seed, k)), sample `samplesPerPrompt` answers per prompt, each seeded by (seed, k, prompt, sample),
and commit the part. A part that is already committed is never regenerated, so a restarted
replica picks up exactly where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import time

from oreal import metrics
from oreal.workers.context import WorkerContext, open_run
from oreal.workers.flags import add_common_args
from oreal.workers.lifecycle import WorkerError, run_worker, set_threads
from oreal.workers.polling import run_done, wait_for
from oreal.workers.timing import timed_phase

log = logging.getLogger("oreal.worker.rollout")


def register(roles: argparse._SubParsersAction) -> None:
    parser = roles.add_parser("rollout", help="generate samples for a shard of each step's prompts")
    add_common_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run_worker("rollout", lambda: run(args))


def load_pool(ctx: WorkerContext):
    from oreal.algorithm.resampling import resample_by_pass_rate
    from oreal.data import load_prompts

    d = ctx.spec.data
    pool = load_prompts(
        d.prompts,
        d.prompt_field,
        d.answer_field,
        d.id_field,
        d.pass_rate_field,
        ctx.location.fsspec_options(d.prompts),
    )
    if d.pass_rate_field:
        pool = resample_by_pass_rate(pool)
        if not pool:
            from oreal.data import DataError

            raise DataError(f"{d.prompts}: every prompt's pass rate is >= 0.8; nothing left to train on")
    return pool


def sampling_options(spec):
    from oreal.engines import SamplingOptions

    s = spec.sampling
    return SamplingOptions(
        temperature=s.temperature, top_p=s.top_p, top_k=max(0, s.top_k), max_new_tokens=s.max_new_tokens
    )


def build_rows(spec, tokenizer, prompts, step: int):
    """(prompt, prompt text, prompt ids, sample index, seed) for every sample to generate."""
    from oreal.data import encode_prompt, render_prompt
    from oreal.engines import sample_seed

    d, a = spec.data, spec.algorithm
    rows = []
    for prompt in prompts:
        text = render_prompt(
            tokenizer, prompt.problem, d.prompt_template, d.system_prompt, d.use_chat_template
        )
        ids = encode_prompt(tokenizer, text, d.use_chat_template, spec.sampling.max_prompt_tokens)
        for j in range(a.samples_per_prompt):
            rows.append((prompt, text, ids, j, sample_seed(a.seed, step, prompt.prompt_id, j)))
    return rows


class Withdrawn(Exception):  # noqa: N818 - a control-flow signal
    """A part of ours for an earlier, uncommitted step was withdrawn (corrupt): regenerate it."""

    def __init__(self, step: int) -> None:
        self.step = step


def withdrawn_step(ctx: WorkerContext, step: int, index: int) -> int | None:
    """An earlier step that is not committed and lacks our part (a verifier withdrew it)."""
    s = ctx.spec.algorithm.max_staleness
    for earlier in range(max(0, step - s - 1), step):
        if not ctx.bucket.rollouts_committed(earlier) and index not in ctx.bucket.rollout_parts_committed(
            earlier
        ):
            return earlier
    return None


def wait_for_end(ctx: WorkerContext, steps: int, index: int) -> int | None:
    """After our last part: wait until the run is done (None) or one of our parts is withdrawn (its step).

    A worker stays until the run is done rather than exiting after its last part: a pod that exits
    is restarted by Kubernetes and counted against spec.maxRestarts, and a withdrawn last part must
    still be generated again.
    """
    found: dict[str, int] = {}

    def ready() -> bool:
        if run_done(ctx.bucket):
            return True
        earlier = withdrawn_step(ctx, steps, index)
        if earlier is not None:
            found["step"] = earlier
            return True
        return False

    wait_for(ctx, "the end of the run", ready)
    return found.get("step")


def pick_version(ctx: WorkerContext, step: int, index: int = 0) -> int | None:
    """The newest committed policy usable for `step` (k - staleness <= v <= k), waiting for it."""
    s = ctx.spec.algorithm.max_staleness
    found: dict[str, int | None] = {"v": None}

    def ready() -> bool:
        found["v"] = ctx.bucket.latest_policy_version()
        if found["v"] is not None and found["v"] >= step - s:
            return True
        earlier = withdrawn_step(ctx, step, index)
        if earlier is not None:
            raise Withdrawn(earlier)
        return False

    if not wait_for(ctx, f"policy v{max(0, step - s)} for step {step}", ready, lambda: run_done(ctx.bucket)):
        return None
    return min(found["v"], step)


def generate_step(ctx: WorkerContext, engine, pool, step: int, index: int, replicas: int, version: int):
    from oreal.data import shard, step_prompts
    from oreal.trajectory import RolloutSample

    spec = ctx.spec
    prompts = shard(
        step_prompts(pool, spec.algorithm.seed, step, spec.algorithm.prompts_per_step), index, replicas
    )
    rows = build_rows(spec, engine.tokenizer, prompts, step)
    outputs = engine.generate([r[2] for r in rows], [r[4] for r in rows], sampling_options(spec))
    samples = []
    for (prompt, text, ids, j, _seed), out in zip(rows, outputs, strict=True):
        samples.append(
            RolloutSample(
                step=step,
                prompt_id=prompt.prompt_id,
                sample_index=j,
                prompt_text=text,
                prompt_token_ids=list(ids),
                response_token_ids=list(out.token_ids),
                response_text=out.text,
                gold=prompt.gold,
                policy_version=version,
                truncated=out.truncated,
                logprobs=list(out.logprobs),
            )
        )
    return samples


def load_policy(ctx: WorkerContext, engine, version: int) -> None:
    start = time.perf_counter()
    local = ctx.bucket.download_policy(version, ctx.work_dir / "policy", link=True)  # read only
    engine.load(local, version)
    metrics.POLICY_SYNC_DURATION.observe(time.perf_counter() - start)
    log.info("loaded policy v%d in %.1fs", version, time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    ctx = open_run(args, "rollout")
    if args.replicas != ctx.spec.rollout.replicas:
        raise WorkerError(
            f"--replicas {args.replicas} does not match spec.rollout.replicas ({ctx.spec.rollout.replicas})"
        )
    set_threads()
    pool = load_pool(ctx)
    engine = open_engine(ctx.spec)
    try:
        step: int | None = 0
        while step is not None:
            step = next_step(ctx, engine, pool, step, args)
    finally:
        engine.close()
    log.info("run is done")
    return 0


def open_engine(spec):
    from oreal.engines import make_generation_engine

    return make_generation_engine(
        spec.rollout.engine,
        batch_size=spec.rollout.batch_size,
        gpu_memory_utilization=spec.rollout.gpu_memory_utilization,
        seed=spec.algorithm.seed,
        dtype=spec.model.dtype,
        max_model_len=spec.sampling.max_prompt_tokens + spec.sampling.max_new_tokens,
    )


def next_step(ctx: WorkerContext, engine, pool, step: int, args: argparse.Namespace) -> int | None:
    """Do what `step` needs from this replica; return the step to look at next, None when the run is done."""
    if step >= ctx.spec.algorithm.steps:  # after our last part: stay until the run is done
        if args.exit_after_last_step:
            return None
        return regenerate(wait_for_end(ctx, ctx.spec.algorithm.steps, args.index), args.index)
    if args.index in ctx.bucket.rollout_parts_committed(step):
        ctx.bucket.commit_rollouts(step, args.replicas)  # in case we died between part and commit
        return step + 1
    try:
        return generate_part(ctx, engine, pool, step, args)
    except Withdrawn as again:
        return regenerate(again.step, args.index)


def regenerate(step: int | None, index: int) -> int | None:
    if step is not None:
        log.warning("part %d of step %d was withdrawn; generating it again", index, step)
    return step


def generate_part(ctx: WorkerContext, engine, pool, step: int, args: argparse.Namespace) -> int | None:
    """Sample this replica's part of `step` with the newest usable policy and commit it; the next step."""
    timings: dict[str, float] = {}
    with timed_phase("wait", timings):
        version = pick_version(ctx, step, args.index)
    if version is None:
        return None
    if engine.version != version:
        with timed_phase("sync", timings):
            load_policy(ctx, engine, version)
    metrics.ROLLOUT_POLICY_STALENESS.set(step - version)
    with timed_phase("generate", timings):
        samples = generate_step(ctx, engine, pool, step, args.index, args.replicas, version)
    with timed_phase("sync", timings):
        ctx.bucket.write_rollout_part(step, args.index, samples)
        ctx.bucket.commit_rollouts(step, args.replicas)
    tokens = sum(len(s.response_token_ids) for s in samples)
    metrics.ROLLOUT_SAMPLES.inc(len(samples))
    metrics.ROLLOUT_GENERATED_TOKENS.inc(tokens)
    record = {**timings, "samples": len(samples), "tokens": tokens, "policy_version": version}
    ctx.bucket.write_timings(step, "rollout", args.index, record)
    log.info(
        "step %d part %d: %d samples, %d tokens in %.1fs (policy v%d)",
        step, args.index, len(samples), tokens, timings.get("generate", 0.0), version,
    )  # fmt: skip
    return step + 1
