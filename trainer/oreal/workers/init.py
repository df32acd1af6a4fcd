"""`oreal worker init`: put a run's frozen spec into its bucket (the first thing every pod does).

The frozen spec is the canonical YAML of the validated OREALRun with `storage.uri` filled in; the
workers read it from `<bucket>/spec.yaml`. `oreal run` writes it before it starts the processes;
on Kubernetes each pod's init container runs this command on the spec the operator mounts
(`/etc/oreal/spec.yaml`). Writing it is idempotent, so any number of pods may race.

A bucket that already holds a different run is refused once that run has started (its initial
policy v0 is committed): mixing two specs in one bucket would corrupt both. Only what does not
change the run's results may change between starts of the same run (`oreal.spec.frozen`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from oreal.bucket import Bucket
from oreal.spec.frozen import frozen_spec, spec_conflict
from oreal.spec.storage import storage_location
from oreal.workers.flags import add_endpoint_arg
from oreal.workers.lifecycle import WorkerError, run_worker

log = logging.getLogger("oreal.worker.init")

DEFAULT_SPEC_FILE = "/etc/oreal/spec.yaml"


class SpecConflict(WorkerError):
    """The bucket already holds a started run with a different spec."""


def store_spec(bucket: Bucket, run, uri: str) -> str:
    """Write the frozen spec of `run` into `bucket` unless it is there already; return its text.

    Raises SpecConflict if the bucket holds a started run whose spec differs beyond run control.
    """
    text = frozen_spec(run, uri)
    stored = bucket.read_spec()
    if stored == text:
        return text
    if stored is not None and bucket.policy_committed(0):
        conflict = spec_conflict(stored, text, source=bucket.spec_url)
        if conflict is not None:
            raise SpecConflict(f"{uri}: {conflict}")
    bucket.write_spec(text)
    return text


def register(roles: argparse._SubParsersAction) -> None:
    parser = roles.add_parser(
        "init",
        help="write a run's frozen spec into its bucket (each pod's init container)",
        description="Validate a run spec and store it as <bucket>/spec.yaml; refuse a bucket that holds "
        "another started run.",
    )
    parser.add_argument(
        "--spec",
        type=Path,
        default=Path(os.environ.get("OREAL_SPEC_FILE", DEFAULT_SPEC_FILE)),
        help=f"the OREALRun YAML (default: $OREAL_SPEC_FILE or {DEFAULT_SPEC_FILE})",
    )
    parser.add_argument(
        "--run",
        default=os.environ.get("OREAL_RUN_URI"),
        metavar="URI",
        help="the run's bucket URI (default: $OREAL_RUN_URI, else the spec's storage.uri)",
    )
    add_endpoint_arg(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run_worker("init", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from oreal.spec import SpecError, load_run

    try:
        spec_run = load_run(args.spec)
    except SpecError as err:
        raise WorkerError(str(err)) from None
    storage = spec_run.spec.storage
    if args.run and storage.uri and args.run.rstrip("/") != storage.uri.rstrip("/"):
        raise WorkerError(
            f"--run {args.run} differs from spec.storage.uri {storage.uri}: the spec must name the bucket it lives in"
        )
    try:
        location = storage_location(args.run, storage, endpoint=args.endpoint)
    except ValueError as err:
        raise WorkerError(f"{args.spec}: {err}") from None
    bucket = Bucket.at(location)
    store_spec(bucket, spec_run, location.uri)
    log.info("run %s: spec stored in %s", spec_run.metadata.name, bucket.uri)
    return 0
