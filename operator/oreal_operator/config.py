"""The operator's own settings, read once from its environment (the Helm chart sets them).

OREAL_WORKER_IMAGE             required: the workers' image (spec.<role>.image overrides it)
OREAL_OPERATOR_NAMESPACES      comma-separated namespaces to watch; empty: all namespaces
OREAL_OPERATOR_METRICS_PORT    port of the operator's /metrics (default 9401; 0 disables it)
OREAL_OPERATOR_STATUS_SECONDS  how often the status timer observes each run (default 15)
OREAL_OPERATOR_HEALTH_PORT     port of Kopf's liveness endpoint /healthz (default 8080; 0 disables it)
OREAL_WORKER_IMAGE_PULL_SECRETS  comma-separated Secret names the run pods pull their image with
                               (imagePullSecrets; each must exist in the run's namespace); empty: none
OREAL_OPERATOR_LEADER_ELECTION "namespace/name" of the coordination.k8s.io Lease that several replicas
                               elect their one reconciling leader with (see `leader`); empty: no election
OREAL_OPERATOR_LEASE_SECONDS   how long a leader's Lease lasts without renewal (default 15)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_METRICS_PORT = 9401
DEFAULT_STATUS_SECONDS = 15.0
DEFAULT_HEALTH_PORT = 8080
DEFAULT_LEASE_SECONDS = 15.0
# A Secret's name is a DNS subdomain (RFC 1123): lowercase alphanumerics, '-' and '.', at most 253.
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_SECRET_NAME = 253


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message is one line naming the variable."""


@dataclass(frozen=True)
class OperatorConfig:
    image: str
    namespaces: tuple[str, ...] = ()
    metrics_port: int = DEFAULT_METRICS_PORT
    status_seconds: float = DEFAULT_STATUS_SECONDS
    health_port: int = DEFAULT_HEALTH_PORT
    image_pull_secrets: tuple[str, ...] = ()  # the run pods' imagePullSecrets
    leader_lease: str = ""  # "namespace/name" of the leader-election Lease; "" = no election
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @property
    def liveness_endpoint(self) -> str | None:
        return f"http://0.0.0.0:{self.health_port}/healthz" if self.health_port else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        image = env.get("OREAL_WORKER_IMAGE", "").strip()
        if not image:
            raise ConfigError(
                "OREAL_WORKER_IMAGE is not set: the operator needs the workers' image (e.g. ghcr.io/org/oreal:1.0)"
            )
        namespaces = _names(env, "OREAL_OPERATOR_NAMESPACES")
        return cls(
            image=image,
            namespaces=namespaces,
            metrics_port=_number(env, "OREAL_OPERATOR_METRICS_PORT", DEFAULT_METRICS_PORT, int, 0),
            status_seconds=_status_seconds(env),
            health_port=_number(env, "OREAL_OPERATOR_HEALTH_PORT", DEFAULT_HEALTH_PORT, int, 0),
            image_pull_secrets=image_pull_secrets(env),
            leader_lease=_lease(env),
            lease_seconds=_number(env, "OREAL_OPERATOR_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, float, 1),
        )


def _lease(env: Mapping[str, str]) -> str:
    """OREAL_OPERATOR_LEADER_ELECTION: "namespace/name" of the Lease, or "" for no election."""
    value = env.get("OREAL_OPERATOR_LEADER_ELECTION", "").strip()
    namespace, slash, name = value.partition("/")
    if value and not (slash and SECRET_NAME.fullmatch(namespace) and SECRET_NAME.fullmatch(name)):
        raise ConfigError(f"OREAL_OPERATOR_LEADER_ELECTION must be namespace/name, got {value!r}")
    return value


def _status_seconds(env: Mapping[str, str]) -> float:
    """OREAL_OPERATOR_STATUS_SECONDS (> 0), the status timer's interval."""
    value = _number(env, "OREAL_OPERATOR_STATUS_SECONDS", DEFAULT_STATUS_SECONDS, float, 0)
    if value <= 0:
        raise ConfigError(f"OREAL_OPERATOR_STATUS_SECONDS must be > 0, got {value}")
    return value


def image_pull_secrets(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """OREAL_WORKER_IMAGE_PULL_SECRETS: Secret names, in order, without blanks and repeats."""
    env = os.environ if env is None else env
    names = _names(env, "OREAL_WORKER_IMAGE_PULL_SECRETS")
    for name in names:
        if len(name) > MAX_SECRET_NAME or not SECRET_NAME.fullmatch(name):
            raise ConfigError(
                f"OREAL_WORKER_IMAGE_PULL_SECRETS: {name!r} is not a Secret name (lowercase letters, digits, "
                f"'-' and '.', starting and ending with a letter or digit, at most {MAX_SECRET_NAME} characters)"
            )
    return names


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list: entries stripped, blank ones and repeats dropped, order kept."""
    entries = (entry.strip() for entry in env.get(name, "").split(","))
    return tuple(dict.fromkeys(entry for entry in entries if entry))


def _number(env: Mapping[str, str], name: str, default: float, kind: type, minimum: float) -> int | float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value
