"""Reading an OREALRun from YAML with errors a user can act on.

Every failure becomes a `SpecError` whose message names the file and the field
(`spec.algorithm.keepPerPrompt: ...`), never a traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from oreal.spec.models import OREALRun

MAX_SPEC_BYTES = 1024 * 1024  # a run spec is a few KB; anything near 1 MiB is a mistake


class SpecError(ValueError):
    """A spec that cannot be used, with a message that points at the field."""


def load_run(path: str | Path) -> OREALRun:
    """Read and validate an OREALRun YAML file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    if path.is_dir():
        raise SpecError(f"{path}: is a directory, expected a YAML file")
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: file is {size:,} bytes; a run spec must be under {MAX_SPEC_BYTES:,} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return parse_run(text, source=str(path))


def parse_run(text: str, source: str = "<spec>") -> OREALRun:
    """Parse YAML text holding one OREALRun."""
    if len(text.encode("utf-8")) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: a run spec must be under {MAX_SPEC_BYTES:,} bytes")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{source}: invalid YAML{where}: {problem}") from None
    if not documents:
        raise SpecError(f"{source}: empty file; expected an OREALRun resource")
    if len(documents) > 1:
        raise SpecError(f"{source}: holds {len(documents)} YAML documents; expected exactly one OREALRun")
    return run_from_dict(documents[0], source=source)


def run_from_dict(data: Any, source: str = "<spec>") -> OREALRun:
    """Validate an already-parsed mapping (from YAML or from the Kubernetes API)."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping (apiVersion, kind, metadata, spec), got {type(data).__name__}"
        )
    try:
        return OREALRun.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: {format_validation_error(err, data)}") from None


def format_validation_error(err: ValidationError, data: Any) -> str:
    """One line per problem: `spec.algorithm.steps: must be >= 1, got 0`."""
    lines: list[str] = []
    by_field: dict[str, int] = {}
    for error in err.errors(include_url=False):
        line = _format_one(error, data)
        field = line.split(":", 1)[0]
        if field in by_field:  # one field failing every member of a union: say it once
            lines[by_field[field]] += " or" + line.split(":", 1)[1].split(", got")[0]
            continue
        by_field[field] = len(lines)
        lines.append(line)
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)


def _format_one(error: dict[str, Any], data: Any) -> str:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "literal["))]
    # pydantic adds the union member name (e.g. 'int', "literal['all']") to union locations
    loc = [p for p in loc if p not in {"int", "str", "constrained-int", "float", "bool"}]
    field = ".".join(loc) or "(top level)"
    kind = error["type"]
    given = error.get("input")
    msg = error["msg"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        hint = ""
        if parent is not None:
            names = sorted(f.alias or n for n, f in parent.model_fields.items())
            close = difflib.get_close_matches(loc[-1], names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(names)}"
        return f"{field}: unknown field{hint}"
    if kind == "missing":
        return f"{field}: required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if given is not None and not isinstance(given, (dict, list)) and kind != "value_error":
        shown = repr(given)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{field}: {msg}, got {shown}"
    return f"{field}: {msg}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by walking `loc` (aliases) from OREALRun."""
    model: type[BaseModel] = OREALRun
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part or n == part), None)
        if field is None:
            return None
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model
