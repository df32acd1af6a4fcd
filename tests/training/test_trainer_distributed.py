"""World size 2 (two CPU processes, gloo) equals world size 1 on the same global batch; so does world
size 3 with a step in which one rank holds no kept sample."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.numerics import assert_same_update

from oreal.training.checkpoint_folder import load_safetensors_dir
from oreal.training.distributed import free_port

WORKER = Path(__file__).with_name("dist_worker.py")
COMPARED = (
    "loss/policy",
    "loss/positive",
    "loss/negative",
    "kl",
    "entropy",
    "rm/loss",
    "rm/accuracy",
    "grad_norm/policy",
    "grad_norm/reward_model",
    "tokens/total",
)


def start(world_size: int, policy: Path, out: Path, backend: str, zero_stage: int = 2) -> list:
    """The ranks of one training job (dist_worker.py), one thread each, started and not waited for."""
    port = str(free_port())
    procs = []
    for rank in range(world_size):
        env = os.environ | {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        cmd = [
            sys.executable,
            str(WORKER),
            "--policy",
            str(policy),
            "--out",
            str(out),
            "--backend",
            backend,
            "--zero-stage",
            str(zero_stage),
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return procs


def launch(*jobs: tuple) -> None:
    """Run the jobs (start()'s arguments) side by side and wait for all: the one-process reference
    and the multi-rank job need not take turns (each rank is one thread)."""
    procs = [p for job in jobs for p in start(*job)]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output[-4000:]


def compare(one: Path, two: Path, initial: Path) -> None:
    s1 = json.loads((one / "stats.json").read_text())
    s2 = json.loads((two / "stats.json").read_text())
    for step, (a, b) in enumerate(zip(s1, s2, strict=True)):
        for key in COMPARED:
            if key in a or key in b:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (step, key)
    assert "loss/policy" in s1[-1] and s1[0]["warmup"] == 1.0
    policy0 = load_safetensors_dir(initial)
    rm0 = {n.removeprefix("model."): w for n, w in policy0.items()}  # the RM's backbone
    for sub, start in (("policy", policy0), ("reward_model", rm0)):
        w1, w2 = load_safetensors_dir(one / sub), load_safetensors_dir(two / sub)
        start = {n: start.get(n, torch.zeros_like(w)) for n, w in w1.items()}  # its head starts at 0
        assert_same_update(start, w1, w2)


@pytest.fixture(scope="module")
def torch_reference(tiny_qwen, tmp_path_factory) -> Path:
    """World size 1 with the torch engine: the reference of both torch comparisons."""
    out = tmp_path_factory.mktemp("ws1-torch")
    launch((1, tiny_qwen, out, "torch"))
    return out


@pytest.mark.slow
def test_world_size_two_matches_one_torch(tiny_qwen, torch_reference, tmp_path):
    launch((2, tiny_qwen, tmp_path / "ws2", "torch"))
    compare(torch_reference, tmp_path / "ws2", tiny_qwen)


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_world_size_two_matches_one_deepspeed(tiny_qwen, tmp_path, zero_stage):
    launch(
        (1, tiny_qwen, tmp_path / "ws1", "deepspeed", zero_stage),
        (2, tiny_qwen, tmp_path / "ws2", "deepspeed", zero_stage),
    )
    compare(tmp_path / "ws1", tmp_path / "ws2", tiny_qwen)


@pytest.mark.slow
def test_world_size_three_with_an_idle_rank_matches_one_torch(tiny_qwen, torch_reference, tmp_path):
    """The last batch keeps 2 samples: rank 2 runs dummy micro-batches and must not change the step."""
    launch((3, tiny_qwen, tmp_path / "ws3", "torch"))
    compare(torch_reference, tmp_path / "ws3", tiny_qwen)
    last = json.loads((tmp_path / "ws3" / "stats.json").read_text())[-1]
    assert last["kept_samples"] == 2 and "loss/policy" in last  # fewer kept samples than ranks
