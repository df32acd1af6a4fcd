"""Where the operator finds the API server and its credentials, without the `kubernetes` client
library (Kopf imports all of its models when it is installed: ~70 MB of the operator's memory).

    connection_info() -> kopf.ConnectionInfo     for Kopf (its login handler) and `api.Api` alike

- in a pod (KUBERNETES_SERVICE_HOST set and a service account token mounted): the API server at
  KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the service account's token and CA (the token
  file is re-read by `api.Api` when the kubelet rotates it; Kopf logs in again on a 401);
- elsewhere: $KUBECONFIG (files separated by ':', the first value of each entry wins, as kubectl
  merges them) or ~/.kube/config, its current context: server, certificate-authority(-data),
  insecure-skip-tls-verify, proxy-url; the user's token, tokenFile, client-certificate(-data) and
  client-key(-data), username/password, an auth-provider's access-token, or an exec credential
  plugin (client.authentication.k8s.io ExecCredential: its token or client certificate, and its
  expiry, after which Kopf and `api.Api` log in again). File paths are relative to their kubeconfig.

`LoginError` (Kopf's) names what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT = 60.0


def connection_info() -> kopf.ConnectionInfo:
    """The API server and credentials: the pod's service account, else the kubeconfig."""
    info = in_cluster()
    if info is not None:
        return info
    return from_kubeconfig()


def in_cluster(
    env: Mapping[str, str] | None = None, account: Path = SERVICE_ACCOUNT
) -> kopf.ConnectionInfo | None:
    """The pod's service account, or None outside a pod."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = account / "token"
    if not host or not port or not token.exists():
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    ca = account / "ca.crt"
    namespace = account / "namespace"
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(ca) if ca.exists() else None,
        token=token.read_text().strip() or None,
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )


def kubeconfig_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    value = env.get("KUBECONFIG")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
    return [Path("~/.kube/config").expanduser()]


def _merged(paths: list[Path]) -> tuple[str | None, dict[str, dict[str, Any]], dict[str, Path]]:
    """(current-context, {section: {name: entry}}, {section/name: the file that defined it})."""
    current: str | None = None
    sections: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    origin: dict[str, Path] = {}
    for path in paths:
        if not path.exists():
            continue
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context") or None
        for section, entries in sections.items():
            for item in config.get(section) or []:
                name = item.get("name")
                if name is not None and name not in entries:
                    entries[name] = item.get(section[:-1]) or {}
                    origin[f"{section}/{name}"] = path
    return current, sections, origin


def from_kubeconfig(env: Mapping[str, str] | None = None) -> kopf.ConnectionInfo:
    """The current context of the kubeconfig (see the module docstring)."""
    paths = kubeconfig_paths(env)
    current, sections, origin = _merged(paths)
    where = os.pathsep.join(str(p) for p in paths)
    if current is None:
        raise kopf.LoginError(f"no API server: not in a pod, and no current-context in kubeconfig {where}")
    context = sections["contexts"].get(current)
    if context is None:
        raise kopf.LoginError(f"kubeconfig {where}: context {current!r} is not defined")
    cluster_name, user_name = context.get("cluster"), context.get("user")
    cluster = sections["clusters"].get(cluster_name)
    if cluster is None or not cluster.get("server"):
        raise kopf.LoginError(f"kubeconfig {where}: cluster {cluster_name!r} has no server")
    user = sections["users"].get(user_name) or {}
    cluster_dir = origin[f"clusters/{cluster_name}"].parent
    user_file = origin.get(f"users/{user_name}")
    user_dir = user_file.parent if user_file else cluster_dir

    def relative(base: Path, value: str | None) -> str | None:
        return str(base / Path(value).expanduser()) if value else None

    # As in client-go, data given inline wins over a file of the same.
    cert_data, key_data = user.get("client-certificate-data"), user.get("client-key-data")
    credentials: dict[str, Any] = {
        "token": user.get("token") or None,
        "certificate_path": None if cert_data else relative(user_dir, user.get("client-certificate")),
        "certificate_data": cert_data,
        "private_key_path": None if key_data else relative(user_dir, user.get("client-key")),
        "private_key_data": key_data,
        "username": user.get("username"),
        "password": user.get("password"),
    }
    if credentials["token"] is None and user.get("tokenFile"):
        credentials["token"] = Path(relative(user_dir, user["tokenFile"]) or "").read_text().strip()
    provider = (user.get("auth-provider") or {}).get("config") or {}
    if credentials["token"] is None and provider.get("access-token"):
        credentials["token"] = provider["access-token"]
    expiration = None
    if user.get("exec"):
        status = exec_credential(user["exec"], cluster, user_dir)
        if status.get("token"):
            credentials["token"] = status["token"]
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            credentials |= {
                "certificate_path": None,
                "certificate_data": status["clientCertificateData"],
                "private_key_path": None,
                "private_key_data": status["clientKeyData"],
            }
        if status.get("expirationTimestamp"):
            expiration = datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
    ca_data = cluster.get("certificate-authority-data")
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=None if ca_data else relative(cluster_dir, cluster.get("certificate-authority")),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")) or None,
        proxy_url=cluster.get("proxy-url"),
        default_namespace=context.get("namespace"),
        expiration=expiration,
        **credentials,
    )


def exec_credential(spec: Mapping[str, Any], cluster: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Run a kubeconfig's exec credential plugin (as kubectl does); its ExecCredential's status."""
    command = str(spec.get("command") or "")
    if not command:
        raise kopf.LoginError("kubeconfig: an exec credential plugin without a command")
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)
    request = {
        "apiVersion": spec.get("apiVersion") or "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if spec.get("provideClusterInfo"):
        request["spec"]["cluster"] = {
            "server": cluster.get("server"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify")),
        }
    env = dict(os.environ, KUBERNETES_EXEC_INFO=json.dumps(request))
    env |= {item["name"]: item["value"] for item in spec.get("env") or []}
    try:
        done = subprocess.run(
            [command, *(spec.get("args") or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=EXEC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise kopf.LoginError(f"kubeconfig: exec credential plugin {command!r}: {err}") from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-300:]
        raise kopf.LoginError(
            f"kubeconfig: exec credential plugin {command!r} exited {done.returncode}: {tail}"
        )
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise kopf.LoginError(
            f"kubeconfig: exec credential plugin {command!r} wrote no ExecCredential"
        ) from None
    return status
