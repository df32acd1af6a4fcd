"""How a worker process runs and ends: logging, threads, SIGTERM/SIGINT, one-line errors, exit codes.

Exit codes and the termination log: `oreal.workers.termination`.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Callable

from oreal import metrics
from oreal.bucket import BucketError, LayoutVersionError, SchemaVersionError
from oreal.workers import termination
from oreal.workers.termination import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PERMANENT

log = logging.getLogger("oreal.worker")


class WorkerError(RuntimeError):
    """A failure the user can fix (bad spec, missing data, unreachable bucket): one clear line."""


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM/SIGINT asked the worker to stop; it exits between two bucket operations."""


_STOP = {"requested": False}


def stop_requested() -> bool:
    return _STOP["requested"]


def _on_signal(signum: int, _frame: object) -> None:
    _STOP["requested"] = True
    raise Stopped(signal.Signals(signum).name)


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
    code: int | None = None
    try:
        code = body()
        if code == 0:
            metrics.hold_for_final_scrape()  # spec.metrics.finalScrapeSeconds; SIGTERM ends it
        return code
    except Stopped as why:
        if code == 0:
            return 0  # the work was done: a stop during the final scrape interrupts nothing
        log.info("stopping on %s", why)
        return EXIT_INTERRUPTED
    # Bad input, or a bucket written by another oreal: restarting cannot help until it is fixed.
    except (WorkerError, DataError, MetricsServerError, LayoutVersionError, SchemaVersionError) as err:
        log.error("%s", describe(err))
        termination.write(describe(err))  # the pod's termination message (workers/termination.py)
        return EXIT_PERMANENT
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
