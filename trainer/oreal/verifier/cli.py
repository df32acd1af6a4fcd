"""`oreal verify --input IN.jsonl --output OUT.jsonl [--timeout S] [--workers N]`.

Each input line is a JSON object with `gold` and `response` (strings) and optionally `truncated`;
other fields pass through. Each output line adds `correct`, `status` and `extracted`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from oreal.jsonl import JSONLError, json_objects

BATCH = 256


class InputError(ValueError):
    """A problem with the input file, reported with its line number."""


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    parser = subparsers.add_parser(
        "verify",
        help="check math answers against references (the OREAL outcome reward)",
        description="Verify model responses against reference answers, one JSON object per line.",
    )
    parser.add_argument("--input", required=True, type=Path, help="JSONL with 'gold' and 'response' fields")
    parser.add_argument("--output", required=True, type=Path, help="JSONL to write, with verdicts added")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per check (default 5)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.set_defaults(func=run)


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open("rb") as handle:
        try:
            for number, record in json_objects(handle):
                for field in ("gold", "response"):
                    if field not in record:
                        raise InputError(f"{path} line {number}: missing field '{field}'")
                    if not isinstance(record[field], str):
                        raise InputError(f"{path} line {number}: field '{field}' must be a string")
                if not isinstance(record.get("truncated", False), bool):
                    raise InputError(f"{path} line {number}: field 'truncated' must be true or false")
                records.append(record)
        except JSONLError as err:
            raise InputError(f"{path} {err}") from None
    return records


def run(args: argparse.Namespace) -> int:
    from . import Verifier  # the verifier starts processes; keep `oreal --help` light

    if args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return 1
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 1
    try:
        records = read_records(args.input)
    except OSError as err:
        print(f"error: cannot read {args.input}: {err.strerror}", file=sys.stderr)
        return 1
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        out = args.output.open("w", encoding="utf-8")
    except OSError as err:
        print(f"error: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 1
    correct = 0
    with (
        out,
        Verifier(timeout_seconds=args.timeout, workers=args.workers) as verifier,
        _progress(len(records)) as bar,
    ):
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            verdicts = verifier.verify_batch(
                [(r["gold"], r["response"], r.get("truncated", False)) for r in chunk]
            )
            for record, verdict in zip(chunk, verdicts, strict=True):
                record.update(correct=verdict.correct, status=verdict.status, extracted=verdict.extracted)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                correct += verdict.correct
            bar(len(chunk))
    print(f"{correct}/{len(records)} correct", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on a terminal; nothing otherwise (logs stay clean in pods)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._progress = None
        self._task = None

    def __enter__(self):  # noqa: ANN204
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("verifying", total=self.total)
        return self.advance

    def advance(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
