"""`helm test`: the operator answers its liveness endpoint and the OREALRun CRD is established.

Runs in the operator image (python + the kubernetes client) with the operator's service account,
which may read CRDs. Settings: OREAL_TEST_HEALTH_URL, OREAL_TEST_CRD. Exit 0 when both hold.
"""

import json
import os
import sys
import urllib.request

import kubernetes


def healthy(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as err:
        return f"{url}: {err}"


def established(name: str) -> str | None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    api = kubernetes.client.ApiextensionsV1Api()
    try:
        crd = json.loads(api.read_custom_resource_definition(name, _preload_content=False).data)
    except kubernetes.client.exceptions.ApiException as err:
        return f"CRD {name}: {err.status} {err.reason}"
    conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
    return None if conditions.get("Established") == "True" else f"CRD {name} is not established: {conditions}"


def main() -> int:
    problems = [
        p
        for p in (healthy(os.environ["OREAL_TEST_HEALTH_URL"]), established(os.environ["OREAL_TEST_CRD"]))
        if p
    ]
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if not problems:
        print("ok: the operator is healthy and the CRD is established")
    return 1 if problems else 0


sys.exit(main())
