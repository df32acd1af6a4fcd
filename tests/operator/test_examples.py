"""Every example run renders into objects Kubernetes accepts, or is refused for the right reason."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from oreal.spec import load_run
from oreal_operator.pods import worker_command
from oreal_operator.render import RenderError, RenderOptions, render_children

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
SHARED = ("s3://", "gs://")


def test_there_are_cluster_and_local_examples():
    runs = [load_run(p) for p in EXAMPLES]
    assert any((r.spec.storage.uri or "").startswith(SHARED) for r in runs)
    assert any(not (r.spec.storage.uri or "").startswith(SHARED) for r in runs)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_renders_or_is_refused_for_its_local_bucket(path):
    run = load_run(path)
    opts = RenderOptions(image="registry.example/oreal:0.1.0", namespace=run.metadata.namespace or "default")
    if not (run.spec.storage.uri or "").startswith(SHARED):
        with pytest.raises(RenderError, match="spec.storage.uri"):
            render_children(run, opts)
        return
    children = render_children(run, opts)
    assert [c["kind"] for c in children] == [
        "ConfigMap",
        "Service",
        "StatefulSet",
        "StatefulSet",
        "StatefulSet",
    ]
    for obj in children:
        kubernetes_validate.validate(obj, "1.31.0", strict=True)
    sets = {c["metadata"]["name"].rsplit("-", 1)[1]: c for c in children if c["kind"] == "StatefulSet"}
    assert sets["rollout"]["spec"]["replicas"] == run.spec.rollout.replicas
    assert sets["trainer"]["spec"]["replicas"] == run.spec.trainer.nodes
    processes = run.spec.trainer.nodes * max(1, run.spec.trainer.gpus_per_node)
    command = worker_command(run.spec, "trainer", run.metadata.name, opts.namespace)
    assert command[0] == ("torchrun" if processes > 1 else "oreal")
