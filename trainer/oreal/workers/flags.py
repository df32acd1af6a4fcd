"""The flags every `oreal worker ROLE` takes, and the replica index of a pod."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path

from oreal.workers.lifecycle import WorkerError


def add_common_args(parser: argparse.ArgumentParser, replicated: bool = True) -> None:
    env_run = os.environ.get("OREAL_RUN_URI")
    parser.add_argument(
        "--run",
        required=env_run is None,
        default=env_run,
        metavar="URI",
        help="the run's bucket URI (file://, s3://, path); default $OREAL_RUN_URI (use the variable "
        "under torchrun, whose own parser mistakes --run for its --run-path)",
    )
    add_endpoint_arg(parser)
    if replicated:
        parser.add_argument(
            "--index",
            type=int,
            default=None,
            help="this replica's index (default: $OREAL_INDEX, else the ordinal ending $HOSTNAME, else 0)",
        )
        parser.add_argument("--replicas", type=int, default=int(os.environ.get("OREAL_REPLICAS", "1")))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus port (default: $OREAL_METRICS_PORT, else spec.metrics.port; 0 disables)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="local scratch folder for weights (default: $OREAL_WORK_DIR or a temp folder)",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=float(os.environ.get("OREAL_POLL_SECONDS", "1.0"))
    )
    parser.add_argument(
        "--exit-after-last-step",
        action="store_true",
        help="rollout and verifier: exit once their last step is committed instead of staying until the "
        "run is done (a pod must stay: Kubernetes restarts a container that exits, and counts it)",
    )


def add_endpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=None,
        help="S3 endpoint URL (default: $OREAL_STORAGE_ENDPOINT, else the spec's storage.endpoint; "
        "region: $OREAL_STORAGE_REGION, else the spec's; see oreal.spec.storage)",
    )


def replica_index(env: Mapping[str, str]) -> int:
    """$OREAL_INDEX; when it is empty, the index ending the pod's hostname ($HOSTNAME).

    The operator fills OREAL_INDEX from the pod's `batch.kubernetes.io/job-completion-index`
    annotation (the JobSet's Indexed Jobs set it); an Indexed Job's pod hostname also ends in
    `-<index>`. Outside a pod the default is 0.
    """
    raw = env.get("OREAL_INDEX", "").strip()
    if raw:
        if not raw.isdigit():
            raise WorkerError(f"OREAL_INDEX must be a replica index (0, 1, ...), got {raw!r}")
        return int(raw)
    match = re.search(r"-(\d+)$", env.get("HOSTNAME", ""))
    in_pod = "KUBERNETES_SERVICE_HOST" in env  # set in every pod; a host named "node-7" is no replica 7
    return int(match.group(1)) if match and in_pod else 0
