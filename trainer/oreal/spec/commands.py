"""`oreal validate`, `oreal crd` and `oreal render`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from oreal import __version__

DEFAULT_WORKER_IMAGE = f"oreal-worker:{__version__}"


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

    render = subparsers.add_parser(
        "render",
        help="print the Kubernetes objects the operator creates for an OREALRun",
        description="Print, as YAML documents, the ConfigMap and the JobSet the operator creates for a run "
        "(the same function renders both), e.g. `oreal render run.yaml | kubectl diff -f -`. Exit 1 with "
        "one line naming the field when the spec cannot run on a cluster.",
    )
    render.add_argument("file", type=Path, metavar="RUN.yaml")
    render.add_argument(
        "--namespace", "-n", help="the run's namespace (default: metadata.namespace, else 'default')"
    )
    render.add_argument(
        "--image",
        default=os.environ.get("OREAL_WORKER_IMAGE"),
        help="the worker image (default: $OREAL_WORKER_IMAGE, the operator's setting; else "
        f"{DEFAULT_WORKER_IMAGE})",
    )
    render.set_defaults(func=_render)


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


def _render(args: argparse.Namespace) -> int:
    import yaml

    from oreal.spec.loader import SpecError, load_run
    from oreal_operator.errors import RenderError
    from oreal_operator.render import RenderOptions, render_run

    try:
        run = load_run(args.file)
        namespace = args.namespace or run.metadata.namespace or "default"
        objects = render_run(
            run, RenderOptions(image=args.image or DEFAULT_WORKER_IMAGE, namespace=namespace)
        )
    except (SpecError, RenderError) as err:
        print(
            f"error: {args.file}: {err}" if isinstance(err, RenderError) else f"error: {err}", file=sys.stderr
        )
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=100))
    return 0
