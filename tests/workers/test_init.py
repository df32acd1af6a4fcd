"""`oreal worker init`: the frozen spec goes into the bucket once; another started run is refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from oreal.bucket import Bucket
from oreal.spec import parse_run
from oreal.workers.__main__ import main as worker
from oreal.workers.init import frozen_spec
from oreal.workers.termination import EXIT_PERMANENT

from .conftest import tiny_spec, write_spec


def _spec_file(tmp_path: Path, uri: str | None, **overrides) -> Path:
    spec = tiny_spec(tmp_path / "model", tmp_path / "prompts.jsonl", **overrides)
    if uri is not None:
        spec["spec"]["storage"] = {"uri": uri}
    return write_spec(tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}.yaml", spec)


def test_init_stores_the_frozen_spec_and_is_idempotent(tmp_path):
    uri = (tmp_path / "bucket").as_uri()
    path = _spec_file(tmp_path, uri)
    assert worker(["init", "--spec", str(path)]) == 0
    bucket = Bucket.open(uri)
    stored = bucket.read_spec()
    run = parse_run(path.read_text())
    assert stored == frozen_spec(run, uri)
    # The operator mounts the frozen text itself: freezing it again changes nothing.
    assert frozen_spec(parse_run(stored), uri) == stored
    frozen_file = tmp_path / "frozen.yaml"
    frozen_file.write_text(stored)
    assert worker(["init", "--spec", str(frozen_file), "--run", uri]) == 0
    assert bucket.read_spec() == stored


def test_init_takes_the_bucket_from_the_environment(tmp_path, monkeypatch):
    uri = (tmp_path / "bucket").as_uri()
    path = _spec_file(tmp_path, None)
    monkeypatch.setenv("OREAL_RUN_URI", uri)
    from oreal.cli import main as oreal

    assert oreal(["worker", "init", "--spec", str(path)]) == 0
    assert "uri: " + uri in Bucket.open(uri).read_spec()


def test_init_refuses_a_bucket_holding_another_started_run(tmp_path, capfd):
    uri = (tmp_path / "bucket").as_uri()
    assert worker(["init", "--spec", str(_spec_file(tmp_path, uri))]) == 0
    bucket = Bucket.open(uri)
    first = bucket.read_spec()
    other = _spec_file(tmp_path, uri, **{"algorithm.steps": 7})
    # Not started yet (no v0): the spec may still change, e.g. to fix a path.
    assert worker(["init", "--spec", str(other)]) == 0
    assert "steps: 7" in bucket.read_spec()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    bucket.publish_policy(0, tmp_path / "model")
    capfd.readouterr()
    assert worker(["init", "--spec", str(_spec_file(tmp_path, uri))]) == EXIT_PERMANENT
    err = capfd.readouterr().err
    assert "already holds run 'tiny' with a different spec (spec.algorithm.steps changed)" in err
    assert "Traceback" not in err
    assert bucket.read_spec() != first  # the started run's spec is kept
    # Run control (Job-like fields) may change on a started run.
    resumed = _spec_file(tmp_path, uri, **{"algorithm.steps": 7, "suspend": True, "maxRestarts": 9})
    assert worker(["init", "--spec", str(resumed)]) == 0
    assert "suspend: true" in bucket.read_spec()


@pytest.mark.parametrize(
    ("uri", "flags", "message"),
    [
        (None, [], "the run's bucket is not named: set spec.storage.uri, --run or $OREAL_RUN_URI"),
        ("file:///somewhere/else", ["--run", "file:///tmp/x"], "differs from spec.storage.uri"),
    ],
)
def test_init_needs_one_bucket(tmp_path, capfd, uri, flags, message, monkeypatch):
    monkeypatch.delenv("OREAL_RUN_URI", raising=False)
    path = _spec_file(tmp_path, uri)
    assert worker(["init", "--spec", str(path), *flags]) == EXIT_PERMANENT
    assert message in capfd.readouterr().err


def test_init_rejects_a_bad_spec_with_the_field_named(tmp_path, capfd):
    path = _spec_file(tmp_path, (tmp_path / "bucket").as_uri(), **{"algorithm.keepPerPrompt": 99})
    assert worker(["init", "--spec", str(path)]) == EXIT_PERMANENT
    err = capfd.readouterr().err
    assert "keepPerPrompt" in err and "Traceback" not in err
    assert not (tmp_path / "bucket" / "spec.yaml").exists()


def test_only_local_rank_zero_serves_metrics(tmp_path, monkeypatch):
    """Under torchrun every rank of a pod opens the run; they must not fight over one port."""
    import argparse

    from oreal.metrics import stop_metrics
    from oreal.workers.context import open_run

    uri = (tmp_path / "bucket").as_uri()
    assert worker(["init", "--spec", str(_spec_file(tmp_path, uri))]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = argparse.Namespace(
        run=uri, endpoint=None, metrics_port=port, work_dir=tmp_path / "w", poll_seconds=0.1
    )

    def listening() -> bool:
        with socket.socket() as c:
            return c.connect_ex(("127.0.0.1", port)) == 0

    try:
        monkeypatch.setenv("LOCAL_RANK", "1")
        open_run(args, "trainer")
        assert not listening()
        monkeypatch.setenv("LOCAL_RANK", "0")
        open_run(args, "trainer")
        assert listening()
    finally:
        stop_metrics()


def test_other_ranks_export_no_trainer_gauges():
    """Rank 0 alone sets the step gauges; another node's rank would export them as 0 forever."""
    import subprocess
    import sys

    code = (
        "from prometheus_client import generate_latest\n"
        "import oreal.metrics as m\n"
        "m.TRAINER_LAST_STEP.record({'loss/policy': 0.5})\n"
        "before = generate_latest(m.REGISTRY).decode()\n"
        "m.drop_trainer_gauges(); m.drop_trainer_gauges()\n"
        "after = generate_latest(m.REGISTRY).decode()\n"
        "print('oreal_trainer_loss ' in before, 'oreal_trainer_' in after, 'oreal_step_phase' in after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "True"]


def test_replica_index_from_env_or_the_pod_name():
    """OREAL_INDEX comes from the pod-index label (Kubernetes >= 1.28); without it, from the pod name."""
    from oreal.workers.flags import replica_index
    from oreal.workers.lifecycle import WorkerError

    assert replica_index({"OREAL_INDEX": "2", "HOSTNAME": "run-rollout-5"}) == 2
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert replica_index({**pod, "OREAL_INDEX": "", "HOSTNAME": "run-rollout-3"}) == 3
    assert replica_index({"OREAL_INDEX": "", "HOSTNAME": "node-7"}) == 0  # not in a pod
    assert replica_index({**pod, "HOSTNAME": "laptop"}) == 0
    assert replica_index({}) == 0
    with pytest.raises(WorkerError, match="OREAL_INDEX must be a replica index"):
        replica_index({"OREAL_INDEX": "one"})


def test_a_started_run_may_change_labels_and_run_control_only():
    from oreal.workers.init import spec_conflict

    base = tiny_spec(Path("/m"), Path("/p.jsonl"))
    base["spec"]["storage"] = {"uri": "s3://b/r"}

    def frozen(**changes) -> str:
        import copy

        import yaml

        data = copy.deepcopy(base)
        for dotted, value in changes.items():
            node = data
            *keys, last = dotted.split("/")
            for key in keys:
                node = node.setdefault(key, {})
            node[last] = value
        return frozen_spec(parse_run(yaml.safe_dump(data)), "s3://b/r")

    stored = frozen()
    assert spec_conflict(stored, stored) is None
    assert spec_conflict(stored, frozen(**{"metadata/labels": {"team": "rl"}, "spec/suspend": True})) is None
    more_memory = {"spec/trainer/resources": {"limits": {"memory": "64Gi"}}, "spec/rollout/image": "oreal:2"}
    assert spec_conflict(stored, frozen(**more_memory, **{"spec/metrics": {"port": 0}})) is None
    message = spec_conflict(stored, frozen(**{"spec/rollout/replicas": 1, "spec/sampling/temperature": 0.5}))
    assert "(spec.rollout.replicas, spec.sampling.temperature changed)" in message
