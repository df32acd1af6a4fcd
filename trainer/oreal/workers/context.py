"""An opened run: its bucket and storage location, its validated spec, a scratch folder, /metrics."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oreal import metrics
from oreal.bucket import Bucket
from oreal.spec.storage import StorageLocation, storage_location
from oreal.workers.flags import replica_index
from oreal.workers.lifecycle import WorkerError, stop_requested


@dataclass
class WorkerContext:
    """An opened run: its bucket, its validated spec and the local scratch folder."""

    bucket: Bucket
    location: StorageLocation  # the bucket's store: prompts and models are read with its options
    run: object  # oreal.spec.OREALRun
    work_dir: Path
    poll_seconds: float
    stop: Callable[[], bool]

    @property
    def spec(self):
        return self.run.spec


def open_run(args: argparse.Namespace, role: str) -> WorkerContext:
    """Open the bucket, read and validate the frozen spec, start /metrics."""
    from oreal.spec import SpecError, parse_run

    if hasattr(args, "index") and args.index is None:
        args.index = replica_index(os.environ)
    if getattr(args, "replicas", 1) < 1 or not 0 <= getattr(args, "index", 0) < getattr(args, "replicas", 1):
        raise WorkerError(f"need 0 <= --index < --replicas, got {args.index} and {args.replicas}")
    try:
        location = storage_location(args.run, endpoint=args.endpoint)
    except ValueError as err:
        raise WorkerError(str(err)) from None
    bucket = Bucket.at(location)
    text = bucket.read_spec()
    if text is None:
        raise WorkerError(f"{bucket.uri}: no spec.yaml; start the run with `oreal run` or the operator")
    try:
        run = parse_run(text, source=bucket.spec_url)
    except SpecError as err:
        raise WorkerError(str(err)) from None
    port = args.metrics_port
    if port is None:
        port = int(os.environ.get("OREAL_METRICS_PORT", run.spec.metrics.port))
    if int(os.environ.get("LOCAL_RANK", "0")) > 0:
        port = 0  # under torchrun the pod's ranks share one port: local rank 0 serves it
    os.environ.setdefault("OREAL_RUN", run.metadata.name)
    metrics.serve_metrics(port, role, run.spec.metrics.final_scrape_seconds)
    suffix = f"-{args.index}" if hasattr(args, "index") else ""
    work_dir = args.work_dir or Path(os.environ.get("OREAL_WORK_DIR", f"/tmp/oreal/{run.metadata.name}"))
    work_dir = Path(work_dir) / f"{role}{suffix}"
    work_dir.mkdir(parents=True, exist_ok=True)
    location = location.with_spec(run.spec.storage)  # prompts and models on the same store
    return WorkerContext(bucket, location, run, work_dir, max(0.01, args.poll_seconds), stop_requested)
