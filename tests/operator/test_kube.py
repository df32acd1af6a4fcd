"""Where the operator finds the API server without the `kubernetes` library (oreal_operator.kube):
the pod's service account, else the kubeconfig's current context; and the API client built from it."""

from __future__ import annotations

import asyncio
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from oreal_operator import kube
from oreal_operator.api import Api


def write_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **sections}))
    return path


def one_context(
    user: dict[str, Any], cluster: dict[str, Any] | None = None, **context: Any
) -> dict[str, Any]:
    return {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", **context}}],
        "clusters": [{"name": "k", "cluster": cluster or {"server": "https://k.example:6443"}}],
        "users": [{"name": "u", "user": user}],
    }


def test_a_token_a_ca_relative_to_its_file_and_the_contexts_namespace(tmp_path: Path) -> None:
    config = one_context(
        {"token": "t0k"},
        {"server": "https://k.example:6443", "certificate-authority": "certs/ca.pem"},
        namespace="ml",
    )
    path = write_config(tmp_path / "config", **config)
    info = kube.from_kubeconfig({"KUBECONFIG": str(path)})
    assert (info.server, info.token, info.default_namespace) == ("https://k.example:6443", "t0k", "ml")
    assert info.ca_path == str(tmp_path / "certs" / "ca.pem")
    assert info.as_http_headers() == {"Authorization": "Bearer t0k"}


def test_several_files_merge_and_the_first_value_wins(tmp_path: Path) -> None:
    first = write_config(
        tmp_path / "a", **{"current-context": "c", "users": [{"name": "u", "user": {"token": "a"}}]}
    )
    second = write_config(tmp_path / "b", **one_context({"token": "b"}, {"server": "http://b:80"}))
    info = kube.from_kubeconfig({"KUBECONFIG": f"{first}:{tmp_path / 'absent'}:{second}"})
    assert (info.server, info.token) == ("http://b:80", "a")


def test_token_file_client_certificate_data_and_basic_auth(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = write_config(tmp_path / "config", **one_context({"tokenFile": "token"}))
    assert kube.from_kubeconfig({"KUBECONFIG": str(path)}).token == "from-file"
    user = {"client-certificate-data": "Q0VSVA==", "client-key": "k.pem", "client-key-data": "S0VZ"}
    path = write_config(tmp_path / "config", **one_context(user))
    info = kube.from_kubeconfig({"KUBECONFIG": str(path)})
    assert (info.certificate_data, info.private_key_path, info.private_key_data) == ("Q0VSVA==", None, "S0VZ")
    path = write_config(tmp_path / "config", **one_context({"username": "me", "password": "pw"}))
    headers = kube.from_kubeconfig({"KUBECONFIG": str(path)}).as_http_headers()
    assert headers["Authorization"].startswith("Basic ")


def test_an_exec_credential_plugin_gives_a_token_that_expires(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "request = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert request['kind'] == 'ExecCredential' and os.environ['EXTRA'] == 'x', request\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': 'ex-' + sys.argv[1],\n"
        "    'expirationTimestamp': '2030-01-01T00:00:00Z'}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    exec_ = {"command": "./plugin.py", "args": ["1"], "env": [{"name": "EXTRA", "value": "x"}]}
    path = write_config(tmp_path / "config", **one_context({"exec": exec_}))
    info = kube.from_kubeconfig({"KUBECONFIG": str(path)})
    assert info.token == "ex-1" and info.expiration == datetime(2030, 1, 1, tzinfo=UTC)
    failing = write_config(tmp_path / "config", **one_context({"exec": {"command": "/bin/false"}}))
    with pytest.raises(kopf.LoginError, match="exited 1"):
        kube.from_kubeconfig({"KUBECONFIG": str(failing)})


def test_no_current_context_is_a_login_error_naming_the_files(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config", clusters=[])
    with pytest.raises(kopf.LoginError, match="no current-context"):
        kube.from_kubeconfig({"KUBECONFIG": str(path)})


def test_in_a_pod_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("oreal-system")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    info = kube.in_cluster(env, tmp_path)
    assert info is not None
    assert (info.server, info.token, info.default_namespace) == (
        "https://10.0.0.1:443",
        "sa-token",
        "oreal-system",
    )
    assert info.ca_path == str(tmp_path / "ca.crt")
    ipv6 = kube.in_cluster({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, tmp_path)
    assert ipv6 is not None and ipv6.server == "https://[fd00::1]:443"
    assert kube.in_cluster({}, tmp_path) is None
    assert kube.in_cluster(env, tmp_path / "absent") is None


def test_the_api_client_connects_as_kopf_does_and_renews_expiring_credentials() -> None:
    plain = Api.from_connection(kopf.ConnectionInfo(server="http://127.0.0.1:1/", token="a"))
    assert (plain.server, plain.headers, plain.ssl) == (
        "http://127.0.0.1:1",
        {"Authorization": "Bearer a"},
        None,
    )
    insecure = Api.from_connection(
        kopf.ConnectionInfo(server="https://k:6443", insecure=True, proxy_url="http://proxy:3128")
    )
    assert insecure.ssl is False and insecure.headers == {} and insecure.proxy == "http://proxy:3128"

    soon = datetime.now(UTC) + timedelta(seconds=5)
    logins: list[int] = []

    def login() -> kopf.ConnectionInfo:
        logins.append(1)
        return kopf.ConnectionInfo(server="http://k", token="new", expiration=soon + timedelta(hours=1))

    api = Api.from_connection(
        kopf.ConnectionInfo(server="http://k", token="old", expiration=soon), login=login
    )
    asyncio.run(api._renew())
    asyncio.run(api._renew())
    assert api.headers == {"Authorization": "Bearer new"} and len(logins) == 1

    async def sixteen_requests_at_once() -> None:  # the reconcile workers share one Api
        await asyncio.gather(*(again._renew() for _ in range(16)))

    again = Api.from_connection(
        kopf.ConnectionInfo(server="http://k", token="old", expiration=soon), login=login
    )
    asyncio.run(sixteen_requests_at_once())
    assert again.headers == {"Authorization": "Bearer new"} and len(logins) == 2  # one login for all


def test_the_operator_runs_where_the_kubernetes_library_is_not_installed(tmp_path: Path) -> None:
    """The operator image ships without `kubernetes` (Kopf imports all of its models when it is
    importable): with it unimportable, the operator starts up to Kopf's run and logs in."""
    import subprocess

    config = write_config(tmp_path / "config", **one_context({"token": "t"}, {"server": "http://k:80"}))
    code = f"""
import importlib.abc, os, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "kubernetes":
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Blocker())
os.environ.update(OREAL_WORKER_IMAGE="registry.example/oreal:1", OREAL_OPERATOR_METRICS_PORT="0",
                  KUBECONFIG={str(config)!r})
os.environ.pop("KUBERNETES_SERVICE_HOST", None)
import kopf
kopf.run = lambda **kwargs: None
from oreal_operator import handlers, leader
from oreal_operator.__main__ import main
assert main([]) == 0
assert handlers.login().server == "http://k:80"
assert leader.LeaseClient("ns", "lease").api.headers == {{"Authorization": "Bearer t"}}
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
