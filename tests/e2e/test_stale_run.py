"""End to end with rollout running ahead (maxStaleness 1 and 2), a rollout and a trainer killed
(SIGKILL) mid-run: steps stay ordered and committed once, every sample records a policy version
the spec allows, the policies a rollout may still need are kept (checkpoint.keep 1 < maxStaleness +
1), and the resumed trainer ends with exactly the weights of one uninterrupted trainer replaying the
committed data step by step (which versions sampled each step depends on timing; what was trained
on is in the bucket).
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from workers.conftest import tiny_spec, write_prompts, write_spec

from oreal.bucket import Bucket
from oreal.spec import load_run

from .test_local_run import _start, _wait, _worker_pids

pytestmark = pytest.mark.slow

STEPS = 4


def _weights(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    assert tensors, f"no weights in {folder}"
    return tensors


def _replay(spec_path, bucket: Bucket, model) -> dict[str, torch.Tensor]:
    """One uninterrupted trainer over the committed rollouts and verdicts, in step order."""
    from oreal.training import OREALTrainer
    from oreal.trajectory import join_verdicts

    torch.set_num_threads(1)  # as the runner's trainer (threads=1)
    trainer = OREALTrainer(load_run(str(spec_path)).spec, model, device="cpu")
    for step in range(STEPS):
        trainer.train_step(join_verdicts(bucket.read_rollouts(step), bucket.read_verdicts(step)), step)
    return {k: v.detach().clone() for k, v in trainer.policy.module.state_dict().items()}


@pytest.mark.parametrize("staleness", [1, 2])
def test_stale_run_survives_sigkill_in_order(tmp_path, tiny_model, staleness):
    prompts = write_prompts(tmp_path / "prompts.jsonl", count=24)
    name = f"stale{staleness}"
    spec = tiny_spec(
        tiny_model,
        prompts,
        name=name,
        **{
            "algorithm.steps": STEPS,
            "algorithm.maxStaleness": staleness,
            "checkpoint": {"every": 2, "keep": 1},
            "maxRestarts": 3,
        },
    )
    bucket_dir = tmp_path / name
    spec["spec"]["storage"] = {"uri": bucket_dir.as_uri()}
    spec_path = write_spec(tmp_path / f"{name}.yaml", spec)
    bucket = Bucket.open(bucket_dir.as_uri())
    proc = _start(spec_path, tmp_path)

    _wait(lambda: bucket.rollouts_committed(1) and _worker_pids(bucket_dir, "rollout"), "rollouts of step 1")
    for pid in _worker_pids(bucket_dir, "rollout")[:1]:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: bucket.verdicts_committed(2) and _worker_pids(bucket_dir, "trainer"), "verdicts of step 2")
    for pid in _worker_pids(bucket_dir, "trainer"):
        os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out

    state = bucket.read_state()
    assert state.done and state.step == STEPS - 1 and state.policy_version == STEPS
    assert bucket.list_stats() == list(range(STEPS))
    for kind in ("rollouts", "verdicts"):
        assert bucket.committed_steps(kind) == list(range(STEPS))
    for step in range(STEPS):
        samples = bucket.read_rollouts(step)
        keys = [s.key for s in samples]
        assert len(keys) == len(set(keys)) == 4 * 4
        versions = {s.policy_version for s in samples}
        assert all(step - staleness <= v <= step for v in versions), (step, versions)
        assert all(len(s.logprobs) == len(s.response_token_ids) for s in samples)
        stats = bucket.read_stats(step)
        # the trainer saw each sample's staleness: step minus the version that sampled it
        assert stats["staleness"] == pytest.approx(
            sum(step - s.policy_version for s in samples) / len(samples)
        )
    # policy retention: v0 and the newest max(keep = 1, maxStaleness + 1) versions
    assert bucket.policy_versions() == [0, *range(STEPS - staleness, STEPS + 1)]
    assert len(bucket.checkpoints.committed_steps()) <= 1

    replayed = _replay(spec_path, bucket, tiny_model)
    final = _weights(bucket_dir / "policy" / f"v{STEPS:06d}")
    assert final.keys() <= replayed.keys()
    for key, tensor in final.items():
        assert torch.equal(tensor, replayed[key]), key
