"""The `oreal` command line.

Each subcommand lives in its own module that exposes `register(subparsers)`; this file only
collects them. Heavy imports (torch, transformers) happen inside the handlers, so `oreal --help`
and `oreal validate` stay fast.
"""

from __future__ import annotations

import argparse
import functools
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
    "oreal.reward_model_fit",
)
# Top-level modules of the worker stack, by the extra that installs them. A base install (`pip
# install oreal`: spec, validate, crd, render, operator) lacks them; a subcommand that needs one says
# which extra to install instead of printing a traceback. tests/test_packaging.py keeps this table
# equal to pyproject.toml's extras.
WORKER_STACK: dict[str, str] = {
    **dict.fromkeys(
        (
            "accelerate",
            "aiobotocore",
            "fsspec",
            "google_crc32c",
            "matplotlib",
            "mpmath",
            "pyarrow",
            "rich",
            "s3fs",
            "safetensors",
            "sympy",
            "torch",
            "transformers",
        ),
        "worker",
    ),
    "deepspeed": "gpu",
    "vllm": "gpu",
    "gcsfs": "gcs",
}


def missing_extra(err: ImportError) -> str | None:
    """The worker-stack module an ImportError is about, or None when it is about something else."""
    name = (getattr(err, "name", None) or "").partition(".")[0]
    return name if name in WORKER_STACK else None


def _needs_extra(module: str, _args: argparse.Namespace) -> int:
    extra = WORKER_STACK[module]
    print(f'oreal: this command needs {module}: pip install "oreal[{extra}]"', file=sys.stderr)
    return 1


# `oreal validate|crd|render` need nothing but the spec: their parser is built from
# oreal.spec.commands alone, so they import no worker stack even where it is installed.
SPEC_COMMANDS = frozenset({"validate", "crd", "render"})


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oreal",
        description="OREAL: outcome-reward reinforcement learning for math reasoning, on Kubernetes or one machine.",
    )
    parser.add_argument("--version", action="version", version=f"oreal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in modules:
        before = set(subparsers.choices)
        try:
            importlib.import_module(module_name).register(subparsers)
        except ImportError as err:
            module = missing_extra(err)
            if module is None:
                raise
            for name in subparsers.choices.keys() - before:  # listed, but says what to install
                stub = subparsers.choices[name]
                stub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
                stub.set_defaults(func=functools.partial(_needs_extra, module))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(
        ("oreal.spec.commands",) if argv[:1] and argv[0] in SPEC_COMMANDS else SUBCOMMAND_MODULES
    )
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ImportError as err:
        module = missing_extra(err)
        if module is None:
            raise
        return _needs_extra(module, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
