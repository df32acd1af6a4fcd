"""Packaging invariants: import names, the console script, and the CLI's subcommands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_folder_never_shadows_stdlib_operator() -> None:
    code = "import operator, oreal_operator; print(operator.__file__); print(oreal_operator.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    stdlib_file, name = out.stdout.split()
    assert not Path(stdlib_file).is_relative_to(ROOT)
    assert name == "oreal_operator"


def test_every_listed_subcommand_has_working_help() -> None:
    from oreal.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert {"validate", "crd"} <= set(subparsers.choices)
    for name, sub in subparsers.choices.items():
        assert sub.format_help().startswith(f"usage: oreal {name}"), name


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "oreal"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("oreal ")
