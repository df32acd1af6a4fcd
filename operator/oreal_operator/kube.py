"""Where the operator finds the API server and its credentials (the `kubernetes` client's config).

    configure()          in-cluster config, else KUBECONFIG / ~/.kube/config
    connection_info()    the same credentials for Kopf (its login handler) and for `api.Api`

The operator's requests themselves go through `oreal_operator.api` (async, one session).
"""

from __future__ import annotations

import os

import kopf
import kubernetes


def configure() -> None:
    """Load the client's configuration: in a pod its service account, elsewhere the kubeconfig
    ($KUBECONFIG read now, not when `kubernetes` was imported)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


def connection_info() -> kopf.ConnectionInfo:
    """Kopf's credentials from the client's configuration, so that both talk to the same server."""
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )
