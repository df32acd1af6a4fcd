"""`python -m oreal_operator`: run the operator (settings from the environment, see `config`)."""

from __future__ import annotations

import sys

from oreal_operator.config import ConfigError, OperatorConfig

EXIT_CONFIG = 2


def main() -> int:
    try:
        config = OperatorConfig.from_env()
    except ConfigError as err:
        print(f"oreal-operator: {err}", file=sys.stderr)
        return EXIT_CONFIG

    import kopf
    from prometheus_client import start_http_server

    from oreal_operator.handlers import build_registry

    if config.metrics_port:
        start_http_server(config.metrics_port)
    kopf.configure(verbose=False)
    kopf.run(
        registry=build_registry(config.status_seconds),
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
