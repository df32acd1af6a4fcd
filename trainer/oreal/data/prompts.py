"""Load prompts from a JSONL or Parquet file at any fsspec URI (local path, file://, s3://, ...).

Every problem with the file is a `DataError` naming the file, the line (or row) and the field,
so the CLI can print one line instead of a traceback. GSM8K-style answers ("... #### 42") are
reduced to the number after the last `####`; other answers are used as given.
"""

from __future__ import annotations

import io
from typing import Any

import fsspec

from oreal.jsonl import JSONLError, json_objects
from oreal.trajectory import Prompt

MAX_PROMPTS_BYTES = 2 * 1024**3


class DataError(ValueError):
    """A prompts file that cannot be used; the message says where and why."""


def gold_from_answer(answer: Any) -> str:
    """The reference answer: the text after the last '####' (GSM8K) or the answer itself."""
    text = str(answer)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")  # "1,000" -> "1000"
    return text.strip()


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    try:
        with fsspec.open(uri, "rb", **(storage_options or {})) as handle:
            data = handle.read(MAX_PROMPTS_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{uri}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{uri}: is a directory, expected a .jsonl or .parquet file") from None
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"{uri}: cannot read ({type(err).__name__}: {err})") from None
    if len(data) > MAX_PROMPTS_BYTES:
        raise DataError(f"{uri}: larger than {MAX_PROMPTS_BYTES:,} bytes")
    return data


def _jsonl_rows(uri: str, data: bytes) -> list[tuple[str, dict[str, Any]]]:
    try:
        return [(f"line {number}", row) for number, row in json_objects(data.split(b"\n"))]
    except JSONLError as err:
        raise DataError(f"{uri} {err}") from None


def _parquet_rows(uri: str, data: bytes) -> list[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{uri}: not a readable Parquet file ({err})") from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist())]


def load_prompts(
    uri: str,
    prompt_field: str = "problem",
    answer_field: str = "answer",
    id_field: str | None = None,
    pass_rate_field: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[Prompt]:
    """Read every prompt of `uri` (.jsonl/.json lines or .parquet); ids default to the row index."""
    data = read_bytes(uri, storage_options)
    rows = _parquet_rows(uri, data) if uri.rstrip("/").endswith(".parquet") else _jsonl_rows(uri, data)
    if not rows:
        raise DataError(f"{uri}: holds no prompts")
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        for name in (prompt_field, answer_field, id_field, pass_rate_field):
            if name is not None and name not in row:
                fields = ", ".join(sorted(row)) or "none"
                raise DataError(f"{uri} {where}: missing field {name!r} (fields present: {fields})")
        problem = row[prompt_field]
        if not isinstance(problem, str) or not problem.strip():
            raise DataError(f"{uri} {where}: field {prompt_field!r} is empty or not text")
        gold = row[answer_field]
        if gold is None or not str(gold).strip():
            raise DataError(f"{uri} {where}: field {answer_field!r} is empty")
        prompt_id = str(row[id_field]) if id_field else str(index)
        if prompt_id in seen:
            raise DataError(f"{uri} {where}: duplicate prompt id {prompt_id!r} in field {id_field!r}")
        seen.add(prompt_id)
        pass_rate = None
        if pass_rate_field is not None:
            try:
                pass_rate = float(row[pass_rate_field])
            except (TypeError, ValueError):
                raise DataError(f"{uri} {where}: field {pass_rate_field!r} is not a number") from None
        prompts.append(
            Prompt(prompt_id=prompt_id, problem=problem, gold=gold_from_answer(gold), pass_rate=pass_rate)
        )
    return prompts


def guess_fields(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[str, str]:
    """(prompt field, answer field) of a MATH-500 (problem/answer) or GSM8K (question/answer) file."""
    data = read_bytes(uri, storage_options)
    rows = _parquet_rows(uri, data) if uri.endswith(".parquet") else _jsonl_rows(uri, data[:1_000_000])
    if not rows:
        raise DataError(f"{uri}: holds no prompts")
    first = rows[0][1]
    for prompt_field in ("problem", "question", "prompt"):
        if prompt_field in first:
            return prompt_field, "answer"
    raise DataError(
        f"{uri}: cannot tell the prompt field; pass --prompt-field (fields: {', '.join(sorted(first))})"
    )
