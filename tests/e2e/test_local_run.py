"""End to end: `oreal run` on a tiny config, then the same run with every worker type killed
(SIGKILL) in the middle of a step and the runner interrupted (SIGINT) and started again.

The interrupted run must finish with every step committed exactly once, contiguous steps, and
final weights equal to the uninterrupted run's (CPU, fixed seeds, per-sample seeded sampling).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from workers.conftest import tiny_spec, write_prompts, write_spec

from oreal.bucket import Bucket

pytestmark = pytest.mark.slow

STEPS = 4
RUNNER = "import sys; from oreal.runner.local import run_local; sys.exit(run_local(sys.argv[1], threads=1, poll=0.2))"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("e2e")
    prompts = write_prompts(root / "prompts.jsonl", count=24)
    return root, tiny_model, prompts


def _spec(root: Path, model: Path, prompts: Path, name: str) -> Path:
    spec = tiny_spec(model, prompts, name=name, **{"algorithm.steps": STEPS, "maxRestarts": 3})
    spec["spec"]["storage"] = {"uri": (root / name).as_uri()}
    return write_spec(root / f"{name}.yaml", spec)


def _start(spec: Path, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OREAL_POLL_SECONDS="0.1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(spec)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _worker_pids(bucket_dir: Path, role: str) -> list[int]:
    """Pids of this run's workers of `role` (found by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if role in args and any(a == bucket_dir.as_uri() for a in args):
            pids.append(int(entry.name))
    return pids


def _wait(condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _final_weights(bucket_dir: Path) -> dict[str, torch.Tensor]:
    files = sorted((bucket_dir / "policy" / f"v{STEPS:06d}").glob("*.safetensors"))
    assert files, "final policy missing"
    tensors = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


def _check_log(bucket_dir: Path) -> None:
    """Every step committed exactly once, contiguous, and the run marked done."""
    bucket = Bucket.open(bucket_dir.as_uri())
    state = bucket.read_state()
    assert state.done and state.step == STEPS - 1 and state.policy_version == STEPS
    assert bucket.list_stats() == list(range(STEPS))
    for kind in ("rollouts", "verdicts"):
        assert bucket.committed_steps(kind) == list(range(STEPS))
    for step in range(STEPS):
        samples, verdicts = bucket.read_rollouts(step), bucket.read_verdicts(step)
        keys = [s.key for s in samples]
        assert len(keys) == len(set(keys)) == 4 * 4
        assert sorted(v.key for v in verdicts) == sorted(keys)
        assert {s.policy_version for s in samples} == {step}
        manifest = json.loads((bucket_dir / "rollouts" / f"step-{step:06d}" / "_COMMITTED").read_text())
        assert [p["part"] for p in manifest["parts"]] == [0, 1]
    assert (bucket_dir / "report.html").is_file() and (bucket_dir / "curves.png").is_file()


@pytest.fixture(scope="module")
def baseline(setup):
    root, model, prompts = setup
    spec = _spec(root, model, prompts, "baseline")
    proc = _start(spec, root)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    _check_log(root / "baseline")
    return _final_weights(root / "baseline")


def test_uninterrupted_run_completes(setup, baseline):
    root, _, _ = setup
    assert baseline
    # Starting a finished run again only rewrites its report.
    proc = _start(root / "baseline.yaml", root)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "already complete" in out, out


def test_killed_workers_and_interrupted_runner_lose_and_duplicate_nothing(setup, baseline):
    root, model, prompts = setup
    bucket_dir = root / "chaos"
    bucket = Bucket.open(bucket_dir.as_uri())
    spec = _spec(root, model, prompts, "chaos")
    proc = _start(spec, root)

    # Rollout killed while generating step 1 (policy v1 published, step 1 not yet committed).
    _wait(lambda: bucket.policy_committed(1) and _worker_pids(bucket_dir, "rollout"), "step 1 to start")
    for pid in _worker_pids(bucket_dir, "rollout")[:1]:
        os.kill(pid, signal.SIGKILL)
    # Verifier killed once step 2's rollouts are in (it is scoring or about to).
    _wait(lambda: bucket.rollouts_committed(2), "rollouts of step 2")
    for pid in _worker_pids(bucket_dir, "verifier"):
        os.kill(pid, signal.SIGKILL)
    # Ctrl-C the runner after step 2 trained: every worker must be gone, then resume.
    _wait(lambda: (s := bucket.read_state()) is not None and s.step >= 2, "step 2 to finish")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "run the same command again to resume" in out
    _wait(
        lambda: not any(_worker_pids(bucket_dir, r) for r in ("rollout", "verifier", "trainer")),
        "no orphans",
        15,
    )

    proc = _start(spec, root)
    # Trainer killed while training step 3 (its verdicts are committed).
    _wait(lambda: bucket.verdicts_committed(3) and _worker_pids(bucket_dir, "trainer"), "verdicts of step 3")
    for pid in _worker_pids(bucket_dir, "trainer"):
        os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert "resuming after step" in out

    _check_log(bucket_dir)
    final = _final_weights(bucket_dir)
    assert final.keys() == baseline.keys()
    for name, tensor in baseline.items():
        assert torch.equal(final[name], tensor), name
