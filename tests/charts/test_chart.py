"""The oreal-operator Helm chart: lint, render, schema-validate, RBAC, security, monitors, and the
contracts with the operator (its env and health endpoint) and with the run pods it scrapes."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helm_chart import CHART, MONITORING_API, NAMESPACE, RELEASE, REPO, by_kind, one, run_helm, template

# Kubernetes versions the rendered objects must be valid for: the chart's minimum and the newest
# schema kubernetes-validate ships.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
WATCHED = ("team-a", "team-b")
MONITORS = ("--set", "serviceMonitor.enabled=true,podMonitor.enabled=true", "--api-versions", MONITORING_API)
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "namespaced": ("--set", "watchNamespaces={team-a,team-b}"),
    "monitors": MONITORS,
    "namespaced-monitors": (*MONITORS, "--set", "watchNamespaces={team-a,team-b}"),
    "no-dashboards": ("--set", "dashboards.enabled=false"),
    "minimal": (
        "--set",
        "metrics.port=0,livenessProbe.enabled=false,serviceAccount.create=false,serviceAccount.name=ops,"
        "rbac.create=false,dashboards.enabled=false",
    ),
    "no-crds": ("--set", "crds.install=false"),
    "ha": ("--set", "replicas=2"),
}

# The operator's RBAC (PLAN.md): (apiGroup, resource, verb). Cluster-scoped resources are granted
# cluster-wide; namespaced ones cluster-wide or in each watched namespace.
CLUSTER_SCOPED = {
    ("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("get", "list", "watch")
} | {("", "namespaces", verb) for verb in ("get", "list", "watch")}
CRUD = ("get", "list", "watch", "create", "patch", "update", "delete")
NAMESPACED = (
    {("oreal.io", "orealruns", verb) for verb in ("get", "list", "watch", "patch", "update")}
    | {("oreal.io", "orealruns/status", verb) for verb in ("get", "patch", "update")}
    # children's ownerReferences set blockOwnerDeletion: clusters with the
    # OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require this
    | {("oreal.io", "orealruns/finalizers", "update")}
    | {("", "configmaps", verb) for verb in CRUD}
    | {("jobset.x-k8s.io", "jobsets", verb) for verb in CRUD}  # one JobSet per run, watched
    | {("", "pods", verb) for verb in ("get", "list")}  # a failed pod's termination message
    | {(group, "events", verb) for group in ("", "events.k8s.io") for verb in ("create", "patch")}
)
# Leader election (templates/leader-election.yaml): the Lease, in the release namespace only.
LEADER = {("coordination.k8s.io", "leases", verb) for verb in ("create", "get", "patch")}


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[dict]]:
    return {name: template(helm, *flags) for name, flags in VARIANTS.items()}


def deployment(objects: list[dict]) -> dict:
    return one(objects, "Deployment")


def container(objects: list[dict]) -> dict:
    (only,) = deployment(objects)["spec"]["template"]["spec"]["containers"]
    return only


def env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(objects)["env"]}


# -- chart metadata and lint ---------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("oreal-operator", "0.1.0", "0.1.0")
    assert chart["kubeVersion"].startswith(">=1.28")


def test_helm_lint_strict(helm: str) -> None:
    for flags in ((), ("--set", "watchNamespaces={team-a}")):
        result = run_helm(helm, "lint", "--strict", str(CHART), *flags)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("version", "ok"), [("1.27.9", False), ("1.28.0", True), ("1.28.3-eks-adc7111", True)]
)
def test_kube_version_needs_pod_index_label(helm: str, version: str, ok: bool) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", version)
    assert (result.returncode == 0) == ok, result.stderr
    if not ok:
        assert "kubeVersion" in result.stderr


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (("--set", "watchNamespace={team-a}"), "Additional property watchNamespace is not allowed"),
        (("--set", "statusSeconds=soon"), "statusSeconds"),
        (("--set", "statusSeconds=0"), "statusSeconds"),
        (("--set", "metrics.port=70000"), "metrics.port"),
        (("--set", "watchNamespaces={Team_A}"), "watchNamespaces.0"),
        (("--set", "podMonitor.enable=true"), "podMonitor"),
        (("--set", "imagePullSecrets[0].name=Reg_Cred"), "imagePullSecrets.0.name"),
        (("--set", "workerImagePullSecrets[0].name=GPU"), "workerImagePullSecrets.0.name"),
    ],
)
def test_values_schema_rejects_typos_and_bad_values(
    helm: str, flags: tuple[str, ...], complaint: str
) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), *flags)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


# Values that are Kubernetes objects (documented as a whole): their inner keys need no comment each.
OPAQUE_VALUES = {"podSecurityContext", "securityContext", "resources", "labels"}


def test_every_value_is_documented() -> None:
    """values.yaml documents each key in a comment right above it (inside Kubernetes objects: the object)."""
    parents: list[tuple[int, str]] = []
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        key = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):", line)
        if key:
            indent = len(key.group(1))
            parents = [(i, name) for i, name in parents if i < indent]
            if not OPAQUE_VALUES & {name for _, name in parents}:
                assert previous.lstrip().startswith("#"), (
                    f"values.yaml:{number} {key.group(2)} has no comment"
                )
            parents.append((indent, key.group(2)))
        if line.strip():
            previous = line


def test_every_default_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(values: dict, schema: dict, where: str) -> None:
        for key, value in values.items():
            assert key in schema["properties"], f"{where}{key} is not in values.schema.json"
            sub = schema["properties"][key]
            if isinstance(value, dict) and "properties" in sub:
                check(value, sub, f"{where}{key}.")

    check(values, schema, "")


def test_the_chart_renders_the_generated_crd_kept_on_uninstall(
    helm: str, rendered: dict[str, list[dict]]
) -> None:
    """The CRD is a template (helm upgrade upgrades it) of the repo's generated CRD, read through the
    link files/orealrun.yaml -> crds/orealrun.yaml: `oreal crd -o crds/orealrun.yaml` is the only command."""
    from oreal.spec.crd import crd_yaml

    link = CHART / "files" / "orealrun.yaml"
    assert link.is_symlink() and link.resolve() == (REPO / "crds" / "orealrun.yaml").resolve()
    assert not (CHART / "crds").exists(), "helm would install crds/ besides the template"
    (crd,) = by_kind(rendered["default"], "CustomResourceDefinition")
    generated = yaml.safe_load(crd_yaml())
    assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert crd == generated, "the chart's CRD is stale: run `oreal crd -o crds/orealrun.yaml`"
    assert not by_kind(rendered["no-crds"], "CustomResourceDefinition")
    unkept = template(helm, "--set", "crds.keep=false")
    assert "annotations" not in one(unkept, "CustomResourceDefinition")["metadata"]


# -- schema validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(
    rendered: dict[str, list[dict]], variant: str, version: str
) -> None:
    objects = rendered[variant]
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # not a core kind: checked field by field in the monitor tests
        kubernetes_validate.validate(obj, version, strict=True)
        if obj["kind"] != "CustomResourceDefinition":  # the CRD is the repo's, labelled by `oreal crd`
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_every_namespaced_object_names_its_namespace(rendered: dict[str, list[dict]]) -> None:
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for objects in rendered.values():
        for obj in objects:
            assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_kinds), obj["metadata"][
                "name"
            ]


# -- the operator Deployment ---------------------------------------------------------------------


def test_operator_replicas_and_update_strategy(helm: str, rendered: dict[str, list[dict]]) -> None:
    """One replica by default; more elect a leader on a Lease, which also lets a rolling update overlap
    the old and new pod. Without leader election: exactly one replica, replaced by Recreate."""
    spec = deployment(rendered["default"])["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate"}
    assert env(rendered["default"])["OREAL_OPERATOR_LEADER_ELECTION"] == f"{NAMESPACE}/{RELEASE}-leader"
    assert deployment(rendered["ha"])["spec"]["replicas"] == 2
    single = template(helm, "--set", "leaderElection.enabled=false")
    assert deployment(single)["spec"]["strategy"] == {"type": "Recreate"}
    assert env(single)["OREAL_OPERATOR_LEADER_ELECTION"] == ""
    refused = run_helm(
        helm, "template", RELEASE, str(CHART), "--set", "replicas=2,leaderElection.enabled=false"
    )
    assert refused.returncode != 0 and "leaderElection" in refused.stderr
    assert container(rendered["default"])["command"] == ["python", "-m", "oreal_operator"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("variant", VARIANTS)
def test_operator_is_locked_down(rendered: dict[str, list[dict]], variant: str) -> None:
    pod = deployment(rendered[variant])["spec"]["template"]["spec"]
    security = container(rendered[variant])["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security
    tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert tmp and "emptyDir" in tmp[0]
    assert {"name": "tmp", "mountPath": "/tmp"} in container(rendered[variant])["volumeMounts"]
    assert container(rendered[variant])["resources"]["limits"]["memory"]


def test_operator_env_defaults(rendered: dict[str, list[dict]]) -> None:
    values = env(rendered["default"])
    image = container(rendered["default"])["image"]
    assert image == "oreal-operator:0.1.0"  # images/operator/Dockerfile, the chart's appVersion
    assert values["OREAL_WORKER_IMAGE"] == "oreal-worker:0.1.0"  # images/worker/Dockerfile
    assert values["OREAL_OPERATOR_NAMESPACES"] == ""
    assert values["OREAL_OPERATOR_METRICS_PORT"] == "9401"
    assert values["OREAL_OPERATOR_STATUS_SECONDS"] == "15"
    assert env(rendered["namespaced"])["OREAL_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_the_worker_image_defaults_to_oreal_worker_beside_the_operator_image(helm: str) -> None:
    objects = template(helm, "--set", "image.repository=registry.example/team/oreal-operator,image.tag=2.0")
    assert container(objects)["image"] == "registry.example/team/oreal-operator:2.0"
    assert env(objects)["OREAL_WORKER_IMAGE"] == "registry.example/team/oreal-worker:2.0"


def test_values_reach_the_deployment(helm: str) -> None:
    objects = template(
        helm,
        "--set",
        "image.repository=registry.example/oreal,image.tag=1.2.3,workerImage=registry.example/worker:7,"
        "statusSeconds=30,metrics.port=9500",
        "--set-json",
        'nodeSelector={"pool":"cpu"}',
        "--set-json",
        'tolerations=[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]',
        "--set-json",
        'extraEnv=[{"name":"OREAL_LOG_LEVEL","value":"DEBUG"}]',
    )
    values = env(objects)
    assert container(objects)["image"] == "registry.example/oreal:1.2.3"
    assert values["OREAL_WORKER_IMAGE"] == "registry.example/worker:7"
    assert values["OREAL_OPERATOR_STATUS_SECONDS"] == "30"
    assert values["OREAL_OPERATOR_METRICS_PORT"] == "9500"
    assert values["OREAL_LOG_LEVEL"] == "DEBUG"
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    (port,) = [p for p in container(objects)["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == 9500
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 9500


@pytest.mark.parametrize(
    ("flags", "operator", "workers"),
    [
        ((), None, ""),
        (
            ("--set-json", 'imagePullSecrets=[{"name":"regcred"},{"name":"mirror"}]'),
            ["regcred", "mirror"],
            "regcred,mirror",
        ),
        (
            (
                "--set-json",
                'imagePullSecrets=[{"name":"regcred"}]',
                "--set-json",
                'workerImagePullSecrets=[{"name":"gpu-registry"}]',
            ),
            ["regcred"],
            "gpu-registry",
        ),
        (
            (
                "--set-json",
                'imagePullSecrets=[{"name":"regcred"}]',
                "--set-json",
                "workerImagePullSecrets=[]",
            ),
            ["regcred"],
            "",
        ),
    ],
)
def test_image_pull_secrets_reach_the_operator_and_the_run_pods(
    helm: str, flags: tuple[str, ...], operator: list[str] | None, workers: str
) -> None:
    """The operator pod pulls with imagePullSecrets; the run pods with workerImagePullSecrets (default:
    the same names), passed as OREAL_WORKER_IMAGE_PULL_SECRETS and read by the operator's config."""
    from oreal.spec import load_run
    from oreal_operator.config import OperatorConfig
    from oreal_operator.render import RenderOptions, render_run

    objects = template(helm, *flags)
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert [s["name"] for s in pod.get("imagePullSecrets", [])] == (operator or [])
    values = env(objects)
    assert values["OREAL_WORKER_IMAGE_PULL_SECRETS"] == workers
    config = OperatorConfig.from_env({k: v for k, v in values.items() if v is not None})
    assert ",".join(config.image_pull_secrets) == workers
    run = load_run(REPO / "examples" / "run.yaml")
    opts = RenderOptions(image=config.image, namespace="team-a", image_pull_secrets=config.image_pull_secrets)
    (jobset,) = by_kind(render_run(run, opts), "JobSet")
    for job in jobset["spec"]["replicatedJobs"]:
        secrets = job["template"]["spec"]["template"]["spec"].get("imagePullSecrets", [])
        assert ",".join(s["name"] for s in secrets) == workers


def test_metrics_port_zero_drops_the_service_and_the_port(helm: str, rendered: dict[str, list[dict]]) -> None:
    objects = rendered["minimal"]
    assert env(objects)["OREAL_OPERATOR_METRICS_PORT"] == "0"
    assert "ports" not in container(objects)
    assert not by_kind(objects, "Service")
    assert "livenessProbe" not in container(objects)
    with_monitor = template(
        helm, "--set", "metrics.port=0,serviceMonitor.enabled=true", "--api-versions", MONITORING_API
    )
    assert not by_kind(with_monitor, "ServiceMonitor")


def test_without_rbac_and_service_account_the_named_account_is_used(rendered: dict[str, list[dict]]) -> None:
    objects = rendered["minimal"]
    assert deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert not [
        o
        for o in objects
        if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]


# -- the operator's side of the contract ------------------------------------------------------------


def test_operator_starts_with_the_charts_settings(
    rendered: dict[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run `python -m oreal_operator`'s main() with the chart's env, Kopf and the HTTP server stubbed:
    the operator must accept every setting, and serve metrics and health where the chart probes."""
    import kopf
    import prometheus_client

    import oreal_operator.leader
    from oreal_operator import __main__ as entry

    objects = rendered["namespaced"]
    for name, value in env(objects).items():
        if value is not None:
            monkeypatch.setenv(name, value)
    calls: dict[str, object] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.update(run=kwargs))
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: None)
    monkeypatch.setattr(
        prometheus_client, "start_http_server", lambda port, *a, **k: calls.update(metrics=port)
    )

    @contextlib.contextmanager
    def leadership(lease: str, **kwargs: object) -> Iterator[threading.Event]:
        calls.update(lease=lease, **kwargs)
        yield threading.Event()

    monkeypatch.setattr(oreal_operator.leader, "leadership", leadership)
    assert entry.main() == 0
    # Leader election on the Lease the chart grants, answering the probe's port while standing by.
    (role,) = by_kind(objects, "Role")
    (lease_rule,) = [r for r in role["rules"] if r.get("resourceNames")]
    assert calls["lease"] == f"{role['metadata']['namespace']}/{lease_rule['resourceNames'][0]}"
    run = calls["run"]
    assert isinstance(run, dict)
    assert tuple(run["namespaces"]) == WATCHED and run["clusterwide"] is False
    assert run["standalone"] is True  # one replica, no peering objects (and no RBAC for them)
    probe = container(objects)["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    endpoint = run["liveness_endpoint"]
    assert re.fullmatch(rf"http://0\.0\.0\.0:{ports[probe['port']]}{re.escape(probe['path'])}", endpoint), (
        endpoint
    )
    assert calls["metrics"] == ports["metrics"]
    assert calls["health_port"] == ports[probe["port"]]
    # The status tick runs at the chart's interval (Kopf keeps private lists of registered handlers).
    (startup,) = [h for h in run["registry"]._activities.get_all_handlers() if h.id == "startup"]
    assert startup.fn.status_seconds == float(env(objects)["OREAL_OPERATOR_STATUS_SECONDS"])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "8080"),
        (("--set", "livenessProbe.port=9090"), "9090"),
        (("--set", "livenessProbe.enabled=false"), "0"),
    ],
)
def test_the_operator_serves_health_where_the_probe_looks(
    helm: str, flags: tuple[str, ...], expected: str
) -> None:
    objects = template(helm, *flags)
    assert env(objects)["OREAL_OPERATOR_HEALTH_PORT"] == expected
    probe = container(objects).get("livenessProbe")
    if expected == "0":
        assert probe is None
    else:
        ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
        assert str(ports[probe["httpGet"]["port"]]) == expected


# -- RBAC ----------------------------------------------------------------------------------------


def grants(role: dict) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def service_account(objects: list[dict]) -> dict:
    name = deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"]
    return {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}


def effective_grants(objects: list[dict]) -> dict[str | None, set[tuple[str, str, str]]]:
    """What the operator's ServiceAccount may do: None -> cluster-wide, namespace -> in that namespace."""
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("ClusterRole", "Role")}
    account = service_account(objects)
    out: dict[str | None, set[tuple[str, str, str]]] = {}
    for binding in objects:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if account not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        role = roles[(ref["kind"], ref["name"])]
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        out.setdefault(scope, set()).update(grants(role))
    return out


def test_service_account_exists(rendered: dict[str, list[dict]]) -> None:
    account = one(rendered["default"], "ServiceAccount")
    assert service_account(rendered["default"]) == {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }


def test_cluster_wide_rbac_is_exactly_the_plan(rendered: dict[str, list[dict]]) -> None:
    assert effective_grants(rendered["default"]) == {None: CLUSTER_SCOPED | NAMESPACED, NAMESPACE: LEADER}


def test_namespaced_rbac_grants_runs_only_in_watched_namespaces(rendered: dict[str, list[dict]]) -> None:
    objects = rendered["namespaced"]
    expected: dict[str | None, set[tuple[str, str, str]]] = {None: CLUSTER_SCOPED, NAMESPACE: LEADER}
    expected |= {namespace: NAMESPACED for namespace in WATCHED}
    assert effective_grants(objects) == expected


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_no_dangerous_permissions(rendered: dict[str, list[dict]], variant: str) -> None:
    for role in rendered[variant]:
        if role["kind"] not in ("ClusterRole", "Role"):
            continue
        assert "aggregationRule" not in role
        for group, resource, verb in grants(role):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert verb not in ("escalate", "bind", "impersonate"), (resource, verb)
            assert resource not in (
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
                "pods/exec",
            )
            assert resource != "secrets", f"secrets {verb}: the operator holds no tenant credentials"


# -- monitors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "namespaced", "no-dashboards", "minimal"])
def test_monitors_are_off_by_default(rendered: dict[str, list[dict]], variant: str) -> None:
    assert not [o for o in rendered[variant] if o["apiVersion"].startswith("monitoring.coreos.com/")]


@pytest.mark.parametrize("kind", ["serviceMonitor", "podMonitor"])
def test_monitor_without_its_api_fails_clearly(helm: str, kind: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", f"{kind}.enabled=true")
    assert result.returncode != 0
    assert f"{kind}.enabled is true" in result.stderr and "monitoring.coreos.com/v1" in result.stderr


def test_service_monitor_scrapes_the_operator(rendered: dict[str, list[dict]]) -> None:
    objects = rendered["monitors"]
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["apiVersion"] == MONITORING_API
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # oreal_runs{namespace} is the runs' namespace, not the operator's
    # the Service reaches the operator pod's metrics port
    pod_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] in {p["name"] for p in container(objects)["ports"]}


def relabel_targets(monitor: dict) -> dict[str, str]:
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    return {r["targetLabel"]: r["sourceLabels"][0] for r in endpoint["relabelings"]}


def meta_label(label: str) -> str:
    """Prometheus' Kubernetes SD name of a pod label (every character outside [a-zA-Z0-9_] becomes _)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


@pytest.mark.parametrize("variant", ["monitors", "namespaced-monitors"])
def test_pod_monitor_scrapes_every_run_pod(rendered: dict[str, list[dict]], variant: str) -> None:
    """Render a real run (examples/run.yaml) with the operator's renderer: the PodMonitor must select
    every pod template, find its metrics port, and turn its labels into the dashboards' target labels."""
    from oreal.spec import load_run
    from oreal_operator.naming import ROLE_LABEL, RUN_LABEL
    from oreal_operator.render import RenderOptions, render_run

    monitor = one(rendered[variant], "PodMonitor")
    assert monitor["apiVersion"] == MONITORING_API
    expected_namespaces = {"matchNames": list(WATCHED)} if "namespaced" in variant else {"any": True}
    assert monitor["spec"]["namespaceSelector"] == expected_namespaces
    assert relabel_targets(monitor) == {
        "run": meta_label(RUN_LABEL),
        "role": meta_label(ROLE_LABEL),
        "namespace": "__meta_kubernetes_namespace",
        "pod": "__meta_kubernetes_pod_name",
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]

    run = load_run(REPO / "examples" / "run.yaml")
    (jobset,) = by_kind(render_run(run, RenderOptions(image="oreal:test", namespace="team-a")), "JobSet")
    jobs = jobset["spec"]["replicatedJobs"]
    assert {j["template"]["metadata"]["labels"][ROLE_LABEL] for j in jobs} == {
        "rollout",
        "verifier",
        "trainer",
    }
    for job in jobs:
        pod = job["template"]["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items(), job["name"]
        assert {RUN_LABEL, ROLE_LABEL} <= pod["metadata"]["labels"].keys()
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports, job["name"]
    # Only global rank 0 exports the trainer's gauges: the run dashboard needs no pod filter (one on
    # the pod name would break with renamed pods and hide nothing).
    board = json.loads((CHART / "dashboards" / "oreal-run.json").read_text())
    assert "pod=" not in json.dumps(board).replace('\\"', '"')


# -- dashboards ----------------------------------------------------------------------------------


def test_dashboards_configmap_holds_every_dashboard(rendered: dict[str, list[dict]]) -> None:
    (configmap,) = [
        c for c in by_kind(rendered["default"], "ConfigMap") if c["metadata"]["name"].endswith("-dashboards")
    ]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert sorted(configmap["data"]) == [f.name for f in files]
    for path in files:
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())


def test_dashboards_can_be_turned_off(rendered: dict[str, list[dict]]) -> None:
    assert not by_kind(rendered["no-dashboards"], "ConfigMap")


# -- NOTES.txt -----------------------------------------------------------------------------------


def test_notes_render(helm: str, tmp_path: Path) -> None:
    """helm template skips NOTES.txt; render it through a copy of the chart where it is a template."""
    chart = tmp_path / "oreal-operator"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "notes" . | quote }}\n'
    )
    for flags, expected in (
        ((), "every namespace"),
        (("--set", "watchNamespaces={team-a,team-b}"), "team-a, team-b"),
    ):
        objects = template(helm, *flags, chart=chart)
        (configmap,) = [o for o in objects if o["metadata"]["name"] == "notes"]
        text = configmap["data"]["notes"]
        assert expected in text and "deploy/oreal-operator" in text, text
        assert "{{" not in text
