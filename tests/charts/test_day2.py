"""Day-2 operations of the chart: CRD upgrades, user roles, leader election's RBAC and `helm test`."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import CHART, NAMESPACE, by_kind, one, template

# -- CRD upgrades ------------------------------------------------------------------------------------


def chart_version(tmp_path: Path, name: str, version: str, crd_edit: Any = None) -> Path:
    """A copy of the chart at `version`; `crd_edit(crd)` changes its CRD as a newer spec would."""
    chart = tmp_path / name / "oreal-operator"
    shutil.copytree(CHART, chart, symlinks=False)  # the link's target, as `helm package` ships it
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = meta["appVersion"] = version
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    if crd_edit is not None:
        path = chart / "files" / "orealrun.yaml"
        crd = yaml.safe_load(path.read_text())
        crd_edit(crd)
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def add_field(crd: dict) -> None:
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["newField"] = {"type": "string", "description": "added in the next version"}
    version["additionalPrinterColumns"].append(
        {"name": "New", "type": "string", "jsonPath": ".spec.newField"}
    )


def test_helm_upgrade_upgrades_the_crd(helm: str, tmp_path: Path) -> None:
    """Two chart versions whose CRDs differ: the CRD is a release object in both (so `helm upgrade`
    applies the new one, as it does every template), kept on uninstall, and the diff between the two
    renders is the CRD change and the version labels, nothing else."""
    old = template(helm, chart=chart_version(tmp_path, "old", "0.1.0"))
    new = template(helm, chart=chart_version(tmp_path, "new", "0.2.0", add_field))
    old_crd, new_crd = one(old, "CustomResourceDefinition"), one(new, "CustomResourceDefinition")
    for crd in (old_crd, new_crd):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (old_version,), (new_version,) = old_crd["spec"]["versions"], new_crd["spec"]["versions"]
    old_spec = old_version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    new_spec = new_version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert new_spec.keys() - old_spec.keys() == {"newField"}
    assert [c["name"] for c in new_version["additionalPrinterColumns"]][-1] == "New"

    def without_versions(objects: list[dict]) -> list[dict]:
        text = yaml.safe_dump(objects).replace("0.2.0", "0.1.0")
        return [o for o in yaml.safe_load(text) if o["kind"] != "CustomResourceDefinition"]

    assert without_versions(new) == without_versions(old)  # nothing but the CRD changed
    # helm does not install or upgrade a chart's crds/ folder: nothing may be left there.
    assert not (CHART / "crds").exists()


# -- user roles ------------------------------------------------------------------------------------

AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
RUNS = ("oreal.io", "orealruns")
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete"}


def aggregated(objects: list[dict], role: str) -> dict[tuple[str, str], set[str]]:
    """What Kubernetes' built-in `role` (admin/edit/view) gains from the chart's ClusterRoles."""
    out: dict[tuple[str, str], set[str]] = {}
    for cluster_role in by_kind(objects, "ClusterRole"):
        if cluster_role["metadata"]["labels"].get(AGGREGATE + role) != "true":
            continue
        for rule in cluster_role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_user_roles_aggregate_to_admin_edit_and_view(helm: str) -> None:
    objects = template(helm)
    view, edit, admin = (aggregated(objects, role) for role in ("view", "edit", "admin"))
    assert view == {RUNS: READ, ("oreal.io", "orealruns/status"): READ}
    assert edit[RUNS] >= READ | WRITE and edit == admin
    assert edit[("oreal.io", "orealruns/status")] == READ  # status is the operator's to write
    assert {group for group, _ in edit} == {"oreal.io"}  # nothing but runs
    for cluster_role in by_kind(objects, "ClusterRole"):
        assert "aggregationRule" not in cluster_role
    assert not aggregated(template(helm, "--set", "userRoles.create=false"), "edit")


# -- leader election -------------------------------------------------------------------------------


def test_leader_election_rbac_is_the_one_lease(helm: str) -> None:
    objects = template(helm, "--set", "replicas=2")
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    namespace, name = env["OREAL_OPERATOR_LEADER_ELECTION"]["value"].split("/")
    assert namespace == NAMESPACE
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role, binding = one(objects, "Role"), one(objects, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
    rules = {(tuple(r.get("resourceNames", ())), v) for r in role["rules"] for v in r["verbs"]}
    assert rules == {((), "create"), ((name,), "get"), ((name,), "patch")}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert not by_kind(template(helm, "--set", "leaderElection.enabled=false"), "Role")


# -- helm test -------------------------------------------------------------------------------------


def test_helm_test_pod_probes_health_through_the_service(helm: str) -> None:
    objects = template(helm)
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    deployment = one(objects, "Deployment")
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pod["spec"]["serviceAccountName"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    env = {e["name"]: e["value"] for e in container["env"]}
    service = one(objects, "Service")
    (health,) = [p for p in service["spec"]["ports"] if p["name"] == "health"]
    url = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{health['port']}/healthz"
    assert env["OREAL_TEST_HEALTH_URL"] == url
    assert health["targetPort"] in {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not by_kind(template(helm, "--set", "livenessProbe.enabled=false"), "Pod")


@pytest.fixture
def health_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def crd_body(established: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "orealruns.oreal.io"},
        "status": {"conditions": [{"type": "Established", "status": established}]},
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "established", "ok"),
    [
        ("/healthz", "True", True),
        ("/nothing", "True", False),
        ("/healthz", "False", False),
        ("/healthz", None, False),
    ],
)
async def test_helm_test_script(
    helm: str, kmock: Any, tmp_path: Path, health_server: str, path: str, established: str | None, ok: bool
) -> None:
    """files/helm-test.py, as the test pod runs it (python -c), against a health endpoint and kmock."""
    (container,) = one(template(helm), "Pod")["spec"]["containers"]
    script = container["command"][2]
    info = kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"]
    info.kind, info.namespaced, info.verbs = "CustomResourceDefinition", False, {"get", "list", "create"}
    if established is not None:
        kmock.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, "orealruns.oreal.io"] = (
            crd_body(established)
        )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "k", "cluster": {"server": str(kmock.url)}}],
                "users": [{"name": "k", "user": {"token": "t"}}],
                "contexts": [{"name": "k", "context": {"cluster": "k", "user": "k"}}],
                "current-context": "k",
            }
        )
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "OREAL_TEST_HEALTH_URL": health_server + path,
        "OREAL_TEST_CRD": "orealruns.oreal.io",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode == 0) == ok, (out + err).decode()
