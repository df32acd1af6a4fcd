"""The three workers run in-process, one after the other, on a one-step tiny run."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from support.verdicts import inject_verdicts

from oreal.bucket import Bucket
from oreal.runner.local import prepare_run
from oreal.workers.__main__ import main as worker

from .conftest import tiny_spec, write_prompts, write_spec

ONE_STEP = {"algorithm.steps": 1, "algorithm.warmupSteps": 0}
SOLO = {**ONE_STEP, "rollout.replicas": 1}  # one rollout replica


def _open(tmp_path, model, prompts, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = write_spec(tmp_path / "run.yaml", tiny_spec(model, prompts, **overrides))
    lr, bucket = prepare_run(str(spec), bucket_uri=(tmp_path / "bucket").as_uri())
    return lr, bucket


def _flags(lr, *extra):
    """Flags for workers run one after the other in this process (so none waits for the run's end)."""
    work = str(Path(lr.run_dir) / "work")
    return ["--run", lr.uri, "--work-dir", work, "--poll-seconds", "0.05", "--exit-after-last-step", *extra]


def _metric(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_one_step_through_all_three_workers(tmp_path, tiny_model, prompts_file):
    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **ONE_STEP)
    bucket.publish_policy(0, tiny_model)
    samples_before = _metric("oreal_rollout_samples_total")
    generate_before = _metric("oreal_step_phase_duration_seconds_count", phase="generate")
    wait_before = _metric("oreal_step_phase_duration_seconds_count", phase="wait")
    for index in (0, 1):
        assert worker(["rollout", *_flags(lr, "--index", str(index), "--replicas", "2")]) == 0
    assert bucket.rollouts_committed(0)
    samples = bucket.read_rollouts(0)
    assert len(samples) == 4 * 4  # promptsPerStep x samplesPerPrompt, over both parts
    assert len({s.key for s in samples}) == len(samples)
    assert all(s.policy_version == 0 and len(s.logprobs) == len(s.response_token_ids) for s in samples)
    assert _metric("oreal_rollout_samples_total") - samples_before == 16
    assert _metric("oreal_step_phase_duration_seconds_count", phase="generate") - generate_before == 2
    # Each worker waited once for v0 (and is timed once: the wait is not counted twice).
    assert _metric("oreal_step_phase_duration_seconds_count", phase="wait") - wait_before == 2
    assert _metric("oreal_rollout_generated_tokens_total") >= sum(len(s.response_token_ids) for s in samples)
    step_dir = "rollouts/step-000000"
    objects = bucket.store.list(step_dir)
    part0 = [n for n in objects if n.startswith("part-00.")]
    assert len(part0) == 1
    data0 = bucket.store.get_bytes(f"{step_dir}/{part0[0]}")
    assert data0

    # A restarted replica leaves its committed part alone: no new version, same bytes.
    assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "2")]) == 0
    assert bucket.store.list(step_dir) == objects
    assert bucket.store.get_bytes(f"{step_dir}/{part0[0]}") == data0

    assert worker(["verifier", *_flags(lr, "--index", "0", "--replicas", "1")]) == 0
    verdicts = bucket.read_verdicts(0)
    assert {v.key for v in verdicts} == {s.key for s in samples}
    assert {v.status for v in verdicts} <= {"correct", "incorrect", "no_answer", "timeout", "error"}

    assert worker(["trainer", *_flags(lr)]) == 0
    state = bucket.read_state()
    assert state.done and state.step == 0 and state.policy_version == 1
    assert bucket.policy_committed(1)
    stats = bucket.read_stats(0)
    assert stats["samples"] == 16 and 0.0 <= stats["pass_rate"] <= 1.0
    # The last step saves the final weights (no optimiser state: a finished run is not resumed).
    assert bucket.checkpoints.final_step() == 0 and bucket.checkpoints.committed_steps() == []
    final = sorted(n for n in bucket.store.list("final") if not n.startswith("_"))
    assert final == ["policy", "reward_model"]
    assert bucket.store.list("final/reward_model") and not bucket.store.list("checkpoints")
    # A trainer started again on a finished run has nothing to do (no replay from the start).
    assert worker(["trainer", *_flags(lr)]) == 0
    assert bucket.read_stats(0) == stats and bucket.checkpoints.final_step() == 0
    assert _metric("oreal_trainer_pass_rate") == pytest.approx(stats["pass_rate"])
    assert _metric("oreal_trainer_step") == 0


def test_rollout_is_deterministic_per_step(tmp_path, tiny_model, prompts_file):
    runs = []
    for name in ("a", "b"):
        lr, bucket = _open(tmp_path / name, tiny_model, prompts_file, **SOLO)
        bucket.publish_policy(0, tiny_model)
        assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "1")]) == 0
        runs.append([(s.key, s.response_token_ids) for s in bucket.read_rollouts(0)])
    assert runs[0] == runs[1]


def _no_traceback(capfd, message):
    err = capfd.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    return err


def test_missing_policy_folder_is_one_clear_line(tmp_path, prompts_file, capfd):
    lr, _ = _open(tmp_path, tmp_path / "no-such-model", prompts_file)
    assert worker(["trainer", *_flags(lr)]) == 3
    _no_traceback(capfd, "is not a model folder")


def test_bad_prompts_file_then_fixed(tmp_path, tiny_model, capfd):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p0", "problem": "What is 1 + 1?"}\n')
    lr, bucket = _open(tmp_path, tiny_model, prompts, **SOLO)
    bucket.publish_policy(0, tiny_model)
    flags = _flags(lr, "--index", "0", "--replicas", "1")
    assert worker(["rollout", *flags]) == 3
    _no_traceback(capfd, "line 1: missing field 'answer'")
    write_prompts(prompts)  # fix the cause, start again: the run goes on
    assert worker(["rollout", *flags]) == 0
    assert bucket.rollouts_committed(0)


def test_full_disk_is_reported_and_the_run_resumes(tmp_path, tiny_model, prompts_file, capfd, monkeypatch):
    from oreal.bucket import store

    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **SOLO)
    bucket.publish_policy(0, tiny_model)
    real_put = store.ObjectStore.put_bytes

    def full(self, key, data):
        if "rollouts/" in key:
            raise OSError(errno.ENOSPC, "No space left on device", key)
        return real_put(self, key, data)

    monkeypatch.setattr(store.ObjectStore, "put_bytes", full)
    monkeypatch.setenv("OREAL_BUCKET_RETRIES", "1")
    flags = _flags(lr, "--index", "0", "--replicas", "1")
    assert worker(["rollout", *flags]) != 0
    err = capfd.readouterr().err
    assert "No space left" in err or "no space left" in err, err
    assert "Traceback" not in err
    monkeypatch.setattr(store.ObjectStore, "put_bytes", real_put)
    assert worker(["rollout", *flags]) == 0
    assert bucket.rollouts_committed(0)


def test_worker_without_a_spec_in_the_bucket(tmp_path, capfd):
    uri = (tmp_path / "empty").as_uri()
    assert worker(["verifier", "--run", uri, "--poll-seconds", "0.05"]) == 3
    _no_traceback(capfd, "no spec.yaml")


def test_bad_index_is_rejected(tmp_path, tiny_model, prompts_file, capfd):
    lr, _ = _open(tmp_path, tiny_model, prompts_file)
    assert worker(["rollout", *_flags(lr, "--index", "2", "--replicas", "2")]) == 3
    _no_traceback(capfd, "--index")


def test_unreachable_bucket_fails_fast_with_a_message(tmp_path, tiny_model, prompts_file, capfd, monkeypatch):
    from oreal.runner.local import run_local

    monkeypatch.setenv("OREAL_BUCKET_RETRIES", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    spec = tiny_spec(tiny_model, prompts_file)
    spec["spec"]["storage"] = {"uri": "s3://nowhere/run", "endpoint": "http://127.0.0.1:9"}
    path = write_spec(tmp_path / "run.yaml", spec)
    assert run_local(str(path)) == 1
    _no_traceback(capfd, "error:")


def test_resume_after_a_bad_spec_is_fixed(tmp_path, tiny_model, prompts_file):
    """Until v0 is published the spec may change (e.g. to fix the policy path)."""
    _, bucket = _open(tmp_path, tmp_path / "wrong", prompts_file)
    lr, bucket = _open(tmp_path, tiny_model, prompts_file)
    assert str(tiny_model) in bucket.read_spec()
    bucket.publish_policy(0, tiny_model)
    from oreal.runner.local import RunnerError

    with pytest.raises(RunnerError, match="different spec"):
        _open(tmp_path, tiny_model, prompts_file, **{"algorithm.steps": 7})


def test_bucket_is_plain_folder_layout(tmp_path, tiny_model, prompts_file):
    lr, bucket = _open(tmp_path, tiny_model, prompts_file)
    assert isinstance(bucket, Bucket) and (tmp_path / "bucket" / "spec.yaml").is_file()


def test_a_withdrawn_part_is_found_for_regeneration(tmp_path, tiny_model, prompts_file):
    from oreal.spec import parse_run
    from oreal.workers.context import WorkerContext
    from oreal.workers.rollout import withdrawn_step

    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **SOLO)
    bucket.publish_policy(0, tiny_model)
    assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "1")]) == 0
    ctx = WorkerContext(bucket, lr.location, parse_run(bucket.read_spec()), tmp_path, 0.05, lambda: False)
    assert bucket.rollouts_committed(0)
    assert withdrawn_step(ctx, 1, 0) is None
    bucket.invalidate_part("rollouts", 0, 0)  # what a verifier does with a corrupt part
    assert withdrawn_step(ctx, 1, 0) == 0


def test_replicas_flag_must_match_the_spec(tmp_path, tiny_model, prompts_file, capfd):
    lr, _ = _open(tmp_path, tiny_model, prompts_file)  # spec: 2 rollout replicas
    assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "3")]) == 3
    _no_traceback(capfd, "does not match spec.rollout.replicas (2)")


def test_stale_rollouts_run_ahead_of_the_trainer(tmp_path, tiny_model, prompts_file):
    """maxStaleness 1: step 1 is generated from v0 without waiting for the trainer."""
    overrides = {**SOLO, "algorithm.steps": 2, "algorithm.maxStaleness": 1}
    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **overrides)
    bucket.publish_policy(0, tiny_model)
    assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "1")]) == 0
    assert bucket.rollouts_committed(0) and bucket.rollouts_committed(1)
    assert {s.policy_version for s in bucket.read_rollouts(1)} == {0}
    assert _metric("oreal_rollout_policy_staleness") == 1


def test_periodic_evaluation_lands_in_the_stats(tmp_path, tiny_model, prompts_file):
    overrides = {**SOLO, "evaluation": {"every": 1, "datasets": [str(prompts_file)]}}
    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **overrides)
    bucket.publish_policy(0, tiny_model)
    for role, extra in (
        ("rollout", ["--index", "0", "--replicas", "1"]),
        ("verifier", ["--index", "0", "--replicas", "1"]),
        ("trainer", []),
    ):
        assert worker([role, *_flags(lr, *extra)]) == 0
    stats = bucket.read_stats(0)
    summary = bucket.read_eval(0, "prompts")
    assert stats["eval/prompts/pass@1"] == summary["pass@1"] and summary["problems"] == 24


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_policy_files_are_linked_not_copied_and_published_in_the_compute_dtype(
    tmp_path, tiny_model, prompts_file, dtype
):
    import torch
    from safetensors.torch import load_file

    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **SOLO, **{"model.dtype": dtype})
    bucket.publish_policy(0, tiny_model)  # as the trainer does first (a copy: the user's folder)
    for role, flags in (
        ("rollout", ("--index", "0", "--replicas", "1")),
        ("verifier", ("--index", "0")),
        ("trainer", ()),
    ):
        assert worker([role, *_flags(lr, *flags)]) == 0
    root = Path(lr.run_dir)
    # The rollout worker's local copy of v0 is a hard link to the bucket's object (no bytes copied).
    v0 = root / "policy" / "v000000" / "model.safetensors"
    local = [p for p in (root / "work").rglob("model.safetensors") if p.parent.name == "policy"]
    assert local and all(p.stat().st_ino == v0.stat().st_ino for p in local)
    published = root / "policy" / "v000001" / "model.safetensors"
    in_checkpoint = root / "final" / "policy" / "model.safetensors"  # the last step's weights
    expected = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    assert {t.dtype for t in load_file(str(published)).values()} == {expected}
    assert {t.dtype for t in load_file(str(in_checkpoint)).values()} == {torch.float32}  # exact resume
    # Published losslessly (fp32): the final weights reuse the very same file instead of saving it again.
    assert (published.stat().st_ino == in_checkpoint.stat().st_ino) == (dtype == "float32")


def _until(condition, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_rollout_and_verifier_stay_until_the_run_is_done(tmp_path, tiny_model, prompts_file):
    """A pod that exits is restarted and counted by Kubernetes: after their last step, rollout and
    verifier wait for the run's end, and the rollout still regenerates a part withdrawn meanwhile."""
    import os
    import subprocess
    import sys

    from oreal.bucket import RunState

    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **ONE_STEP)  # 2 rollout replicas
    bucket.publish_policy(0, tiny_model)
    base = ["--run", lr.uri, "--work-dir", str(tmp_path / "work"), "--poll-seconds", "0.05"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OREAL_METRICS_PORT="0")

    def start(role: str, index: int, replicas: int) -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "oreal.workers",
            role,
            *base,
            "--index",
            str(index),
            "--replicas",
            str(replicas),
        ]
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    rollout = start("rollout", 0, 2)
    verifier = None
    try:
        _until(lambda: 0 in bucket.rollout_parts_committed(0))
        bucket.invalidate_part("rollouts", 0, 0)  # what a verifier does with a corrupt part
        assert 0 not in bucket.rollout_parts_committed(0)
        _until(lambda: 0 in bucket.rollout_parts_committed(0))  # generated again, by the waiting worker
        verifier = start("verifier", 0, 1)
        assert worker(["rollout", *_flags(lr, "--index", "1", "--replicas", "2")]) == 0
        _until(lambda: bucket.verdicts_committed(0))
        assert rollout.poll() is None and verifier.poll() is None  # both stay for the trainer's step
        bucket.write_state(RunState(step=0, policy_version=1, done=True))
        assert rollout.wait(60) == 0, rollout.stderr.read()[-2000:]
        assert verifier.wait(60) == 0, verifier.stderr.read()[-2000:]
    finally:
        for proc in (rollout, verifier):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_a_step_with_no_learnable_group_is_plain_not_nan(tmp_path, tiny_model, prompts_file, capfd):
    lr, bucket = _open(tmp_path, tiny_model, prompts_file, **SOLO)
    bucket.publish_policy(0, tiny_model)
    assert worker(["rollout", *_flags(lr, "--index", "0", "--replicas", "1")]) == 0
    inject_verdicts(bucket, 0, correct=lambda sample: False)  # every group all wrong
    empty_before = _metric("oreal_trainer_empty_steps_total", reason="no_learnable_group")
    assert worker(["trainer", *_flags(lr)]) == 0
    stats = bucket.read_stats(0)
    assert stats["skipped"] == 1.0 and stats["pass_rate"] == 0.0
    assert "loss/policy" not in stats and not any(v != v for v in stats.values())  # absent, no NaN
    line = next(line for line in capfd.readouterr().err.splitlines() if "trainer INFO step 0:" in line)
    assert "nothing to learn" in line and "nan" not in line.lower(), line
    assert _metric("oreal_trainer_empty_steps_total", reason="no_learnable_group") == empty_before + 1
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("oreal_trainer_loss") is None  # absent, not NaN or a stale value
    assert _metric("oreal_trainer_pass_rate") == 0.0
