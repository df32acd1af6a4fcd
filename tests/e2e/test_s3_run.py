"""`oreal run` with the bucket on S3 (a throw-away SeaweedFS server), as pods would use it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.seaweedfs import SeaweedFS, find_weed
from workers.conftest import tiny_spec, write_prompts, write_spec

from oreal.bucket import Bucket

pytestmark = [pytest.mark.slow, pytest.mark.s3]
RUNNER = "import sys; from oreal.runner.local import run_local; sys.exit(run_local(sys.argv[1], threads=1, poll=0.2))"


@pytest.mark.skipif(find_weed() is None, reason="SeaweedFS `weed` binary not installed")
def test_local_run_on_an_s3_bucket(tmp_path, tiny_model):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    with SeaweedFS(tmp_path / "seaweedfs", buckets=["oreal-e2e"]) as s3:
        spec = tiny_spec(tiny_model, prompts, name="on-s3", **{"algorithm.steps": 2})
        spec["spec"]["storage"] = {"uri": "s3://oreal-e2e/runs/on-s3", "endpoint": s3.endpoint}
        path = write_spec(tmp_path / "run.yaml", spec)
        env = dict(os.environ, **s3.env(), OMP_NUM_THREADS="1")
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for key, value in s3.env().items():
            os.environ.setdefault(key, value)
        bucket = Bucket.open("s3://oreal-e2e/runs/on-s3", endpoint=s3.endpoint)
        state = bucket.read_state()
        assert state.done and state.policy_version == 2
        assert bucket.committed_steps("rollouts") == [0, 1] and bucket.committed_steps("verdicts") == [0, 1]
        assert len(bucket.read_rollouts(1)) == 16 and bucket.read_stats(1) is not None
        # Logs and the report stay on the machine that ran `oreal run`.
        assert (tmp_path / "runs" / "on-s3" / "report.html").is_file()
