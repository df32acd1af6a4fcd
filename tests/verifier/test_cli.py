"""`oreal verify`, through a parser built from `register` (as oreal/cli.py will do)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from oreal.verifier.cli import register


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="oreal")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def write(path: Path, lines: list[str] | bytes) -> Path:
    path.write_bytes(lines if isinstance(lines, bytes) else "\n".join(lines).encode() + b"\n")
    return path


def test_verify_writes_verdicts_and_passes_fields_through(tmp_path: Path, capsys) -> None:
    rows = [
        {"id": 1, "gold": "\\frac{1}{2}", "response": "so \\boxed{0.5}"},
        {"id": 2, "gold": "3", "response": "the answer is 4", "meta": {"k": [1]}},
        {"id": 3, "gold": "3", "response": "\\boxed{3}", "truncated": True},
        {"id": 4, "gold": "\\cot x", "response": "\\boxed{\\frac{\\cos x}{\\sin x}}"},
    ]
    source = write(tmp_path / "in.jsonl", [json.dumps(r) for r in rows] + [""])
    target = tmp_path / "out.jsonl"
    assert (
        run("verify", "--input", str(source), "--output", str(target), "--workers", "1", "--timeout", "5")
        == 0
    )
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["id"], r["correct"], r["status"], r["extracted"]) for r in out] == [
        (1, True, "correct", "0.5"),
        (2, False, "incorrect", "4"),
        (3, False, "no_answer", None),
        (4, True, "correct", "\\frac{\\cos x}{\\sin x}"),
    ]
    assert out[1]["meta"] == {"k": [1]}
    captured = capsys.readouterr()
    assert "2/4 correct" in captured.err
    assert "verifying" not in captured.err  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (['{"gold": "1", "response": "x"}', "not json"], " line 2: invalid JSON"),
        (['{"gold": "1"}'], " line 1: missing field 'response'"),
        (['{"response": "x"}'], " line 1: missing field 'gold'"),
        (['{"gold": 1, "response": "x"}'], " line 1: field 'gold' must be a string"),
        (['{"gold": "1", "response": "x", "truncated": "yes"}'], " line 1: field 'truncated'"),
        (["[1, 2]"], " line 1: expected a JSON object"),
        (b'{"gold": "1", "response": "x"}\n{"gold": "\xff", "response": "x"}\n', " line 2: not UTF-8 text"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys, content, message: str) -> None:
    source = write(tmp_path / "in.jsonl", content)
    assert run("verify", "--input", str(source), "--output", str(tmp_path / "out.jsonl")) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_input_file(tmp_path: Path, capsys) -> None:
    assert run("verify", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")) == 1
    assert "cannot read" in capsys.readouterr().err


def test_bad_options(tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "in.jsonl", ['{"gold": "1", "response": "x"}'])
    assert run("verify", "--input", str(source), "--output", str(tmp_path / "o"), "--timeout", "0") == 1
    assert run("verify", "--input", str(source), "--output", str(tmp_path / "o"), "--workers", "0") == 1
