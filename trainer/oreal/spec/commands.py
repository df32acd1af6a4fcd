"""`oreal validate` and `oreal crd`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check an OREALRun YAML file",
        description="Parse and validate OREALRun files; exit 1 with a message naming the field on error.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="RUN.yaml")
    validate.add_argument("--quiet", "-q", action="store_true", help="print nothing when valid")
    validate.set_defaults(func=_validate)

    crd = subparsers.add_parser("crd", help="print the OREALRun CustomResourceDefinition")
    crd.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    crd.set_defaults(func=_crd)


def _validate(args: argparse.Namespace) -> int:
    from oreal.spec.loader import SpecError, load_run

    status = 0
    for path in args.files:
        try:
            run = load_run(path)
        except SpecError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        if not args.quiet:
            a = run.spec.algorithm
            print(
                f"{path}: valid OREALRun '{run.metadata.name}' ({a.name}/{a.variant}, {a.steps} steps, "
                f"{a.prompts_per_step} prompts x {a.samples_per_prompt} samples)"
            )
    return status


def _crd(args: argparse.Namespace) -> int:
    from oreal.spec.crd import crd_yaml

    text = crd_yaml()
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
