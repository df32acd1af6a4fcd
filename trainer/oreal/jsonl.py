"""Reading JSON Lines: one JSON object per line, with errors that name the line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


class JSONLError(ValueError):
    """A line that is not a UTF-8 JSON object; the message starts with 'line N:'."""


def json_objects(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every line that is not blank; JSONLError on the first bad one."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONLError(f"line {number}: not UTF-8 text (byte {err.start})") from None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise JSONLError(f"line {number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise JSONLError(f"line {number}: expected a JSON object, got {type(row).__name__}")
        yield number, row
