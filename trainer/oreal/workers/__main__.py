"""`python -m oreal.workers ROLE ...`: the same as `oreal worker ROLE ...`."""

from __future__ import annotations

import argparse
import sys

from oreal.workers import init, launch, rollout, trainer, verifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oreal worker")
    roles = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    for module in (rollout, verifier, trainer, init, launch):
        module.register(roles)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
