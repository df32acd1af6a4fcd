"""The trainer worker under torchrun with two CPU ranks (gloo) trains the same step as one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from workers.conftest import tiny_spec, write_prompts, write_spec

from oreal.runner.local import prepare
from oreal.workers.__main__ import main as worker

pytestmark = pytest.mark.slow


def _one_step_run(root, model, prompts, name):
    spec = tiny_spec(model, prompts, name=name, **{"algorithm.steps": 1, "algorithm.warmupSteps": 0})
    lr, bucket = prepare(str(write_spec(root / f"{name}.yaml", spec)), bucket_uri=(root / name).as_uri())
    bucket.publish_policy(0, model)
    flags = [
        "--run",
        lr.uri,
        "--work-dir",
        str(root / name / "work"),
        "--poll-seconds",
        "0.05",
        "--exit-after-last-step",
    ]
    for index in (0, 1):
        assert worker(["rollout", *flags, "--index", str(index), "--replicas", "2"]) == 0
    assert worker(["verifier", *flags, "--index", "0", "--replicas", "1"]) == 0
    return lr, bucket, flags


def _weights(bucket_dir):
    return load_file(str(bucket_dir / "policy" / "v000001" / "model.safetensors"))


def test_two_rank_trainer_matches_one_process(tmp_path, tiny_model):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    _, single, flags = _one_step_run(tmp_path, tiny_model, prompts, "single")
    assert worker(["trainer", *flags]) == 0

    lr, bucket, flags = _one_step_run(tmp_path, tiny_model, prompts, "ranks")
    # torchrun's own parser would take --run for its --run-path: the bucket goes in OREAL_RUN_URI.
    env = dict(os.environ, OMP_NUM_THREADS="1", OREAL_METRICS_PORT="0", OREAL_RUN_URI=lr.uri)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "oreal.workers", "trainer", *flags[2:]],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert bucket.read_state().done
    one, two = _weights(tmp_path / "single"), _weights(tmp_path / "ranks")
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert any(
        not torch.equal(t, load_file(str(tiny_model / "model.safetensors"))[n]) for n, t in two.items()
    )
