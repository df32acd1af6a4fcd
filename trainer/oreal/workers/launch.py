"""`oreal worker launch -- TORCHRUN-ARGS`: torchrun, keeping a failed rank's exit code.

A trainer pod with several processes runs them under torchrun, and torchrun exits 1 whenever a
rank fails, whatever that rank's code was. The pod's podFailurePolicy tells a permanent failure
(3: a spec the bucket refuses, bad data; fail the run at once) from a retriable one (1: restart
the gang) by the container's exit code (`oreal.workers.termination`), so this wrapper runs torchrun
in the same process and exits 3 when any failed rank exited 3, 130 when it was stopped by a
signal, 1 otherwise. The failed rank has written its reason to the termination log itself.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from oreal.workers.termination import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PERMANENT

log = logging.getLogger("oreal.worker.launch")


def register(roles: argparse._SubParsersAction) -> None:
    parser = roles.add_parser(
        "launch",
        help="run torchrun with the given arguments, exiting with a failed rank's code",
        description="torchrun that keeps a failed rank's exit code (3 permanent, 1 retriable).",
    )
    parser.add_argument("torchrun", nargs=argparse.REMAINDER, help="-- then torchrun's arguments")
    parser.set_defaults(func=main)


def exit_code(failures: Mapping[int, Any]) -> int:
    """The container's exit code for torchrun's failed ranks ({rank: ProcessFailure})."""
    codes = {getattr(failure, "exitcode", None) for failure in failures.values()}
    return EXIT_PERMANENT if EXIT_PERMANENT in codes else EXIT_ERROR


def main(args: argparse.Namespace) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    argv = list(args.torchrun)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        code = exit_code(err.failures)
        log.error("trainer ranks failed (%s): exit %d", ", ".join(map(str, sorted(err.failures))), code)
        return code
    except SignalException as err:
        log.info("stopping on %s", err.sigval)
        return EXIT_INTERRUPTED
    return EXIT_OK
