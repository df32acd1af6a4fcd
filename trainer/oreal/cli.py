"""The `oreal` command line.

Each subcommand lives in its own module that exposes `register(subparsers)`; this file only
collects them. Heavy imports (torch, transformers) happen inside the handlers, so `oreal --help`
and `oreal validate` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from oreal import __version__

# Modules whose `register(subparsers)` adds a subcommand, in the order `oreal --help` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "oreal.spec.commands",
    "oreal.runner",
    "oreal.workers",
    "oreal.verifier.cli",
    "oreal.evaluation",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oreal",
        description="OREAL: outcome-reward reinforcement learning for math reasoning, on Kubernetes or one machine.",
    )
    parser.add_argument("--version", action="version", version=f"oreal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
