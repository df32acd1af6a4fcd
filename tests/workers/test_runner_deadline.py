"""spec.activeDeadlineSeconds in `oreal run`: the workers stop, the run is recorded as
Failed/DeadlineExceeded, the runner exits 124, and a later run without the deadline resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oreal.bucket import Bucket
from oreal.runner.local import EXIT_DEADLINE, prepare_run
from oreal.runner.status import STATUS_FILE
from workers.conftest import tiny_spec, write_spec

pytestmark = pytest.mark.slow


def _oreal_run(spec: Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, OREAL_POLL_SECONDS="0.1", OMP_NUM_THREADS="1")
    env.pop("OREAL_ROLLOUT_PYTHON", None)
    return subprocess.run(
        [sys.executable, "-m", "oreal.cli", "run", str(spec), "--threads", "1", "--metrics-port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def _processes_of(work_dir: Path) -> list[int]:
    """Live processes that inherited this run's environment (workers and anything they started)."""
    marker = f"OREAL_WORK_DIR={work_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in environ and stat.split(")")[-1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def _spec(tmp_path: Path, model: Path, prompts: Path, deadline: int | None) -> Path:
    overrides = {"algorithm.steps": 2, "rollout.replicas": 1}
    if deadline is not None:
        overrides["activeDeadlineSeconds"] = deadline
    spec = tiny_spec(model, prompts, name="deadline", **overrides)
    spec["spec"]["storage"] = {"uri": (tmp_path / "bucket").as_uri()}
    return write_spec(tmp_path / "run.yaml", spec)


def test_deadline_stops_the_run_and_a_later_run_resumes_it(tmp_path, tiny_model, prompts_file):
    bucket_dir = tmp_path / "bucket"
    first = _oreal_run(_spec(tmp_path, tiny_model, prompts_file, deadline=3), tmp_path, timeout=120)
    assert first.returncode == EXIT_DEADLINE, first.stdout
    assert "deadline exceeded: spec.activeDeadlineSeconds (3 s) exceeded" in first.stdout
    assert _processes_of(bucket_dir / "work") == []

    status = json.loads((bucket_dir / STATUS_FILE).read_text())
    assert status["phase"] == "Failed"
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Failed", "True", "DeadlineExceeded")
    ]
    bucket = Bucket.open(bucket_dir.as_uri())
    state = bucket.read_state()
    assert state is not None and not state.done
    assert state.message.startswith("DeadlineExceeded: spec.activeDeadlineSeconds (3 s) exceeded")
    assert bucket.list_stats() == list(range(state.step + 1))  # what was committed is kept

    second = _oreal_run(_spec(tmp_path, tiny_model, prompts_file, deadline=None), tmp_path, timeout=400)
    assert second.returncode == 0, second.stdout
    assert "the previous session stopped: DeadlineExceeded" in second.stdout
    state = bucket.read_state()
    assert state.done and state.step == 1 and state.message == ""
    assert bucket.list_stats() == [0, 1]
    status = json.loads((bucket_dir / STATUS_FILE).read_text())
    assert status["phase"] == "Succeeded" and status["conditions"][0]["type"] == "Complete"
    # the same fields as the resource's .status: the last step's metrics, finite numbers only
    last = bucket.read_stats(1)
    assert status["policyVersion"] == 2 and status["lastMetrics"]["passRate"] == last["pass_rate"]
    assert ("loss" in status["lastMetrics"]) == ("loss/policy" in last)
    assert _processes_of(bucket_dir / "work") == []


def test_run_control_fields_may_change_on_resume_but_the_rest_may_not(tmp_path, tiny_model, prompts_file):
    def open_with(**overrides):
        spec = write_spec(tmp_path / "run.yaml", tiny_spec(tiny_model, prompts_file, **overrides))
        return prepare_run(str(spec), bucket_uri=(tmp_path / "bucket").as_uri())

    _, bucket = open_with(activeDeadlineSeconds=5)
    bucket.publish_policy(0, tiny_model)
    lr, _ = open_with(maxRestarts=5)  # no deadline now, more restarts
    assert lr.spec.active_deadline_seconds is None and lr.spec.max_restarts == 5
    assert "activeDeadlineSeconds" not in bucket.read_spec()
    from oreal.runner.local import RunnerError

    with pytest.raises(RunnerError, match="different spec"):
        open_with(**{"algorithm.steps": 7})
