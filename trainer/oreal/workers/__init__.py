"""The three worker roles (`oreal worker rollout|verifier|trainer`): the only code inside pods.

They coordinate only through the run bucket, so any of them can die and restart without losing
or duplicating a step. `oreal worker init` stores the frozen spec in the bucket first (each pod's
init container). `register(subparsers)` adds the `oreal worker` command group.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run one worker role (rollout, verifier or trainer) of a run",
        description="Run one worker of a run. The operator's pods and `oreal run` start these.",
    )
    # The roles need the worker stack (pip install "oreal[worker]"); without it `oreal worker` says so.
    from oreal.workers import init, launch, rollout, trainer, verifier

    roles = parser.add_subparsers(dest="role", metavar="ROLE")
    rollout.register(roles)
    verifier.register(roles)
    trainer.register(roles)
    init.register(roles)
    launch.register(roles)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
