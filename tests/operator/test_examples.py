"""Every example run renders into objects Kubernetes and JobSet accept, or is refused for the right reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from oreal.spec import load_run
from oreal_operator.errors import RenderError
from oreal_operator.naming import ROLES
from oreal_operator.pods import role_replicas, worker_command
from oreal_operator.render import RenderOptions, queue_name, render_run
from tests.operator.rendered import K8S_VERSIONS, container, jobset, replicated_job, validate_everything

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml"))
SHARED = ("s3://", "gs://")


def runs() -> list[Path]:
    return [p for p in EXAMPLES if "kind: OREALRun" in p.read_text()]


def test_there_are_cluster_local_and_queued_examples():
    loaded = [load_run(p) for p in runs()]
    assert any((r.spec.storage.uri or "").startswith(SHARED) for r in loaded)
    assert any(not (r.spec.storage.uri or "").startswith(SHARED) for r in loaded)
    assert any(queue_name(r) for r in loaded)


@pytest.mark.parametrize("path", runs(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_renders_or_is_refused_for_its_local_bucket(path):
    run = load_run(path)
    opts = RenderOptions(image="registry.example/oreal:0.1.0", namespace=run.metadata.namespace or "default")
    if not (run.spec.storage.uri or "").startswith(SHARED):
        with pytest.raises(RenderError, match="spec.storage.uri"):
            render_run(run, opts)
        return
    children = render_run(run, opts)
    assert [c["kind"] for c in children] == ["ConfigMap", "JobSet"]
    for version in K8S_VERSIONS:
        validate_everything(children, version)
    for role in ROLES:
        job = replicated_job(children, role)["template"]["spec"]
        assert job["parallelism"] == job["completions"] == role_replicas(run.spec, role)
    processes = run.spec.trainer.nodes * max(1, run.spec.trainer.gpus_per_node)
    command = worker_command(run.spec, "trainer", run.metadata.name, opts.namespace)
    assert command[:3] == (
        ["oreal", "worker", "launch"] if processes > 1 else ["oreal", "worker", command[2]]
    )
    assert container(children, "trainer")["command"] == command
    assert jobset(children)["spec"]["suspend"] is bool(run.spec.suspend or queue_name(run))


def test_the_kueue_example_fits_together():
    """The queued run names the LocalQueue and priority class the example creates, and the
    ClusterQueue's quota admits the whole run (all its pods) at once."""
    import yaml

    folder = Path(__file__).resolve().parents[2] / "examples" / "kueue"
    docs = [d for p in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs if d["apiVersion"].startswith("kueue.x-k8s.io/")}
    assert set(by_kind) == {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"}
    run = load_run(folder / "run.yaml")
    local = by_kind["LocalQueue"]
    assert (
        queue_name(run) == local["metadata"]["name"]
        and run.metadata.namespace == local["metadata"]["namespace"]
    )
    assert local["spec"]["clusterQueue"] == by_kind["ClusterQueue"]["metadata"]["name"]
    assert (
        run.metadata.labels["kueue.x-k8s.io/priority-class"]
        == by_kind["WorkloadPriorityClass"]["metadata"]["name"]
    )
    [group] = by_kind["ClusterQueue"]["spec"]["resourceGroups"]
    [flavor] = group["flavors"]
    assert flavor["name"] == by_kind["ResourceFlavor"]["metadata"]["name"]
    quota = {r["name"]: r["nominalQuota"] for r in flavor["resources"]}
    spec = run.spec
    gpus = (
        spec.rollout.replicas * spec.rollout.gpus_per_replica
        + spec.trainer.nodes * spec.trainer.gpus_per_node
    )
    assert gpus <= quota["nvidia.com/gpu"]
    cpus = sum(
        role_replicas(spec, role) * int(getattr(spec, role).resources.requests.get("cpu", 0))
        for role in ROLES
    )
    assert cpus <= quota["cpu"]
