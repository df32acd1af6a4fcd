"""The operator's own settings, read once from its environment (the Helm chart sets them).

OREAL_WORKER_IMAGE             required: the workers' image (spec.<role>.image overrides it)
OREAL_OPERATOR_NAMESPACES      comma-separated namespaces to watch; empty: all namespaces
OREAL_OPERATOR_METRICS_PORT    port of the operator's /metrics (default 9401; 0 disables it)
OREAL_OPERATOR_STATUS_SECONDS  how often the status timer observes each run (default 15)
OREAL_OPERATOR_HEALTH_PORT     port of Kopf's liveness endpoint /healthz (default 8080; 0 disables it)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_METRICS_PORT = 9401
DEFAULT_STATUS_SECONDS = 15.0
DEFAULT_HEALTH_PORT = 8080


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message is one line naming the variable."""


@dataclass(frozen=True)
class OperatorConfig:
    image: str
    namespaces: tuple[str, ...] = ()
    metrics_port: int = DEFAULT_METRICS_PORT
    status_seconds: float = DEFAULT_STATUS_SECONDS
    health_port: int = DEFAULT_HEALTH_PORT

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
        namespaces = tuple(
            n.strip() for n in env.get("OREAL_OPERATOR_NAMESPACES", "").split(",") if n.strip()
        )
        return cls(
            image=image,
            namespaces=namespaces,
            metrics_port=_number(env, "OREAL_OPERATOR_METRICS_PORT", DEFAULT_METRICS_PORT, int, 0),
            status_seconds=status_seconds(env),
            health_port=_number(env, "OREAL_OPERATOR_HEALTH_PORT", DEFAULT_HEALTH_PORT, int, 0),
        )


def status_seconds(env: Mapping[str, str] | None = None) -> float:
    """OREAL_OPERATOR_STATUS_SECONDS (> 0), the status timer's interval."""
    env = os.environ if env is None else env
    value = _number(env, "OREAL_OPERATOR_STATUS_SECONDS", DEFAULT_STATUS_SECONDS, float, 0)
    if value <= 0:
        raise ConfigError(f"OREAL_OPERATOR_STATUS_SECONDS must be > 0, got {value}")
    return value


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
