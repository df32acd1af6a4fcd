"""`oreal run`: the local runner (see `oreal.runner.local`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a whole OREALRun on this machine (workers as local processes)",
        description="Run an OREALRun locally: the bucket defaults to ./runs/<name>/; "
        "start the same command again to resume. spec.activeDeadlineSeconds counts from the start of "
        "this command (not of the run, as a Job's would): when it runs out the workers stop, committed "
        "steps are kept and the run is recorded as Failed/DeadlineExceeded. "
        "Exit codes: 0 done, 1 failed, 2 bad --rollout-python, 124 deadline exceeded, 130 interrupted.",
    )
    parser.add_argument("spec", help="the OREALRun YAML file")
    parser.add_argument(
        "--bucket", default=None, help="bucket URI (default: spec.storage.uri or ./runs/<name>/)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per worker (default: all cores)"
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="first metrics port (0 disables)")
    parser.add_argument(
        "--rollout-python",
        metavar="PATH",
        default=None,
        help="Python interpreter for the rollout workers, e.g. a venv with vLLM's CPU build and this "
        "package installed (default: $OREAL_ROLLOUT_PYTHON, else this Python)",
    )
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from oreal.runner.local import run_local

    return run_local(
        args.spec,
        bucket_uri=args.bucket,
        threads=args.threads,
        metrics_port=args.metrics_port,
        rollout_python_path=args.rollout_python,
    )
