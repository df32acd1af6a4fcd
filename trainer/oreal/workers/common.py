"""What every worker shares: flags, opening the run, waiting on the bucket, timing, clean errors."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from oreal import metrics
from oreal.bucket import Bucket, BucketError
from oreal.spec.storage import ENDPOINT_ENV, StorageLocation, storage_location
from oreal.workers import termination

log = logging.getLogger("oreal.worker")

EXIT_OK, EXIT_ERROR, EXIT_PERMANENT, EXIT_INTERRUPTED = 0, 1, 3, 130


class WorkerError(RuntimeError):
    """A failure the user can fix (bad spec, missing data, unreachable bucket): one clear line."""


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM/SIGINT asked the worker to stop; it exits between two bucket operations."""


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
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("OREAL_STORAGE_ENDPOINT"),
        help="S3 endpoint URL (default: $OREAL_STORAGE_ENDPOINT; region: $OREAL_STORAGE_REGION; "
        "oreal.spec.storage)",
    )
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


def replica_index(env: Mapping[str, str]) -> int:
    """$OREAL_INDEX; when it is empty, the ordinal ending the pod's name ($HOSTNAME).

    The operator fills OREAL_INDEX from the pod's `apps.kubernetes.io/pod-index` label, which a
    StatefulSet sets from Kubernetes 1.28 on; without it the variable is empty, and a StatefulSet
    pod's name (its hostname) still ends in `-<ordinal>`. Outside a pod the default is 0.
    """
    raw = env.get("OREAL_INDEX", "").strip()
    if raw:
        if not raw.isdigit():
            raise WorkerError(f"OREAL_INDEX must be a replica index (0, 1, ...), got {raw!r}")
        return int(raw)
    match = re.search(r"-(\d+)$", env.get("HOSTNAME", ""))
    in_pod = "KUBERNETES_SERVICE_HOST" in env  # set in every pod; a host named "node-7" is no replica 7
    return int(match.group(1)) if match and in_pod else 0


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
    env = {**os.environ, ENDPOINT_ENV: args.endpoint} if args.endpoint else os.environ
    location = storage_location(args.run, env=env)
    bucket = Bucket.at(location)
    text = bucket.read_spec()
    if text is None:
        raise WorkerError(f"{bucket.uri}: no spec.yaml; start the run with `oreal run` or the operator")
    try:
        run = parse_run(text, source=f"{bucket.uri}/spec.yaml")
    except SpecError as err:
        raise WorkerError(str(err)) from None
    port = args.metrics_port
    if port is None:
        port = int(os.environ.get("OREAL_METRICS_PORT", run.spec.metrics.port))
    if int(os.environ.get("LOCAL_RANK", "0")) > 0:
        port = 0  # under torchrun the pod's ranks share one port: local rank 0 serves it
    os.environ.setdefault("OREAL_RUN", run.metadata.name)
    metrics.serve_metrics(port, role)
    suffix = f"-{args.index}" if hasattr(args, "index") else ""
    work_dir = args.work_dir or Path(os.environ.get("OREAL_WORK_DIR", f"/tmp/oreal/{run.metadata.name}"))
    work_dir = Path(work_dir) / f"{role}{suffix}"
    work_dir.mkdir(parents=True, exist_ok=True)
    location = location.with_spec(run.spec.storage)  # prompts and models on the same store
    return WorkerContext(bucket, location, run, work_dir, max(0.01, args.poll_seconds), stop_requested)


_STOP = {"requested": False}


def stop_requested() -> bool:
    return _STOP["requested"]


def _on_signal(signum: int, _frame: object) -> None:
    _STOP["requested"] = True
    raise Stopped(signal.Signals(signum).name)


def wait_for(
    ctx: WorkerContext, what: str, ready: Callable[[], bool], done: Callable[[], bool] | None = None
) -> bool:
    """Poll `ready()` until true (returns True) or until `done()` says the run ended (False).

    Callers time it as the `wait` phase (`with phase("wait", timings)`), once: this function
    records nothing itself.
    """
    start = time.perf_counter()
    announced = False
    while True:
        if ready():
            return True
        if done is not None and done():
            return False
        if not announced and time.perf_counter() - start > 5 * ctx.poll_seconds:
            log.info("waiting for %s", what)
            announced = True
        time.sleep(ctx.poll_seconds)


def run_done(bucket: Bucket) -> bool:
    state = bucket.read_state()
    return bool(state and state.done)


@contextlib.contextmanager
def phase(name: str, into: dict[str, float] | None = None) -> Iterator[None]:
    """Time one phase (generate|verify|train|sync|wait) into the Prometheus histogram and `into`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        metrics.STEP_PHASE_DURATION.labels(name).observe(seconds)
        if into is not None:
            into[name] = into.get(name, 0.0) + seconds


def configure_logging(role: str) -> None:
    level = os.environ.get("OREAL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {role} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "botocore", "aiobotocore", "s3fs", "fsspec", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_threads() -> None:
    """Honour OREAL_NUM_THREADS (the local runner splits the machine's cores between workers)."""
    threads = os.environ.get("OREAL_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def describe(err: BaseException) -> str:
    """One line for an expected failure."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"no space left on device ({err.filename or 'local disk'}): free space, then start again to resume"
    return str(err) or type(err).__name__


def run_worker(role: str, body: Callable[[], int]) -> int:
    """Run a worker body with logging, signal handling and one-line errors (no tracebacks)."""
    from oreal.data import DataError
    from oreal.metrics import MetricsServerError

    configure_logging(role)
    # Before torch loads: idle OpenMP threads must sleep, not spin, while another role computes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    _STOP["requested"] = False
    try:
        return body()
    except Stopped as why:
        log.info("stopping on %s", why)
        return EXIT_INTERRUPTED
    except (WorkerError, DataError, MetricsServerError) as err:
        log.error("%s", describe(err))
        termination.write(describe(err))  # the pod's termination message (workers/termination.py)
        return EXIT_PERMANENT  # restarting cannot help until the input is fixed
    except BucketError as err:
        log.error("%s", describe(err))
        termination.write(describe(err))
        return EXIT_ERROR
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.ENOENT):
            log.error("%s", describe(err))
            termination.write(describe(err))
            return EXIT_ERROR
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        metrics.stop_metrics()
