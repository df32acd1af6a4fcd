"""`oreal validate` on bad input: one clear message, exit code 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oreal.cli import main

GOOD = {
    "apiVersion": "oreal.io/v1alpha1",
    "kind": "OREALRun",
    "metadata": {"name": "tiny"},
    "spec": {"model": {"policy": "/m"}, "data": {"prompts": "/p.jsonl"}},
}


def _with(spec_patch: dict) -> str:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in spec_patch.items():
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(leaf)
        else:
            node[leaf] = value
    return yaml.safe_dump(doc)


CASES = {
    "unknown field": (
        _with({"spec.algorithm.stepz": 3}),
        "spec.algorithm.stepz: unknown field; did you mean 'steps'?",
    ),
    "wrong type": (
        _with({"spec.algorithm.steps": "many"}),
        "spec.algorithm.steps: Input should be a valid integer",
    ),
    "zero count": (
        _with({"spec.algorithm.promptsPerStep": 0}),
        "spec.algorithm.promptsPerStep: Input should be greater than or equal to 1, got 0",
    ),
    "negative count": (
        _with({"spec.rollout.replicas": -2}),
        "spec.rollout.replicas: Input should be greater than or equal to 1, got -2",
    ),
    "unknown algorithm": (
        _with({"spec.algorithm.name": "ppo"}),
        "spec.algorithm.name: Input should be 'oreal', 'grpo' or 'reinforce', got 'ppo'",
    ),
    "unknown engine": (
        _with({"spec.rollout.engine": "sglang"}),
        "spec.rollout.engine: Input should be 'vllm' or 'hf', got 'sglang'",
    ),
    "missing model": (_with({"spec.model": ...}), "spec.model: required field is missing"),
    "not a mapping": (
        "- just\n- a list\n",
        "expected a mapping (apiVersion, kind, metadata, spec), got list",
    ),
    "empty file": ("", "empty file; expected an OREALRun resource"),
    "bad yaml": ("spec: [unclosed\n", "invalid YAML (line 2, column 1)"),
    "wrong kind": (_with({"kind": "Job"}), "kind: Input should be 'OREALRun', got 'Job'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_message(case: str, tmp_path: Path, capsys) -> None:
    text, expected = CASES[case]
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert err.startswith(f"error: {path}: ")
    assert "Traceback" not in err


def test_ten_megabyte_file_is_refused_without_reading_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * (10 * 1024 * 1024) + b"\n")
    assert main(["validate", str(path)]) == 1
    assert "a run spec must be under 1,048,576 bytes" in capsys.readouterr().err


def test_missing_file_and_non_utf8(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err
    raw = tmp_path / "latin1.yaml"
    raw.write_bytes(b"metadata: {name: caf\xe9}\n")
    assert main(["validate", str(raw)]) == 1
    assert "not UTF-8 text (byte 20)" in capsys.readouterr().err


def test_valid_file_exits_zero_and_says_what_it_is(repo_root: Path, capsys) -> None:
    assert main(["validate", str(repo_root / "examples" / "run.yaml")]) == 0
    assert (
        "valid OREALRun 'qwen7b-oreal' (oreal/reference, 90 steps, 64 prompts x 16 samples)"
        in capsys.readouterr().out
    )


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CASES["unknown engine"][0])
    proc = subprocess.run(
        [sys.executable, "-m", "oreal.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
