"""`python -m oreal_operator`: run the operator (settings from the environment, see `config`)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from oreal_operator import config as config_module
from oreal_operator.config import ConfigError, OperatorConfig

EXIT_CONFIG = 2
YOUNG_COLLECTION = 10_000  # allocations between collections of the youngest generation


def main(argv: Sequence[str] = ()) -> int:
    if argv:  # no options: settings come from the environment; --help says which
        print(f"usage: python -m oreal_operator\n\nSettings (environment):\n{config_module.__doc__}")
        return 0 if argv[0] in ("-h", "--help") else EXIT_CONFIG
    try:
        config = OperatorConfig.from_env()
    except ConfigError as err:
        print(f"oreal-operator: {err}", file=sys.stderr)
        return EXIT_CONFIG

    import kopf
    from prometheus_client import start_http_server

    from oreal_operator.handlers import build_registry
    from oreal_operator.leader import Timing, leadership

    if config.metrics_port:
        start_http_server(config.metrics_port)
    tune_gc()
    kopf.configure(verbose=False)
    # With OREAL_OPERATOR_LEADER_ELECTION (replicas > 1) this waits for the Lease; when it is lost the
    # process sends itself SIGTERM (Kopf stops) and exits non-zero, to come back as a standby.
    timing = Timing(config.lease_seconds)
    with leadership(config.leader_lease, health_port=config.health_port, timing=timing) as lost:
        kopf.run(
            registry=build_registry(config.status_seconds),
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=config.liveness_endpoint,
        )
    return 1 if lost.is_set() else 0


def tune_gc() -> None:
    """The cyclic garbage collector at scale: what the imports made (Kopf, pydantic, the models)
    is frozen out of its scans, and the youngest generation is collected every 10,000 allocations
    instead of 700, so that most short-lived objects (a watch event's dicts) are gone by then. With
    the defaults, 1,000 runs created at once cost ~2 s of collections, a quarter of the operator's
    CPU; with these ~0.5 s (benchmarks/results/operator.md)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION, older, oldest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
