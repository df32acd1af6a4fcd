"""Packaging invariants: import names, the console script, and the CLI's subcommands."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

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


# -- the base install: spec, CLI validate/crd/render and the operator, without the worker stack --------

# Runs a module as `python -m` would, with every worker-stack module (and numpy, which only the worker
# stack brings) unimportable, as in an environment where only `pip install oreal` ran.
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not in the base install)", name=name)
sys.meta_path.insert(0, Blocker())
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def run_base(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    from oreal.cli import WORKER_STACK

    blocked = ",".join(sorted({*WORKER_STACK, "numpy"}))
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, blocked, module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def top_level_modules(distribution: str) -> set[str]:
    """Top-level import names of an installed distribution (its own name when not installed here)."""
    names = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if distribution in {d.lower().replace("_", "-") for d in dists} and not module.startswith("_")
    }
    return names or {distribution.replace("-", "_")}


def test_worker_stack_table_is_the_extras() -> None:
    """cli.WORKER_STACK (what a base install lacks) names every module the extras bring, and nothing
    that the base install needs."""
    from oreal.cli import WORKER_STACK

    project = pyproject()["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    covered: dict[str, str] = {}
    for extra in ("worker", "gpu", "gcs"):
        for requirement in project["optional-dependencies"][extra]:
            name = requirement_name(requirement)
            if name == "oreal":
                continue  # gpu includes oreal[worker]
            assert name not in base, f"{name} is in the base install and in [{extra}]"
            modules = top_level_modules(name) & WORKER_STACK.keys()
            assert modules, f"no module of {name} ([{extra}]) is in cli.WORKER_STACK"
            covered |= dict.fromkeys(modules, extra)
    assert covered == WORKER_STACK  # each module under the extra that installs it, and no other
    assert not {m for name in base for m in top_level_modules(name)} & WORKER_STACK.keys()


def test_base_dependencies_are_the_light_ones() -> None:
    names = {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
    # no `kubernetes`: Kopf would import all of its models (~70 MB) into the operator
    assert names == {"kopf", "pydantic", "pyyaml", "prometheus-client"}
    extras = pyproject()["project"]["optional-dependencies"]
    assert "oreal[worker]" in extras["gpu"]
    assert any(r.startswith("vllm==") for r in extras["gpu"]), "vLLM is pinned"


def test_cli_light_commands_run_without_the_worker_stack(tmp_path: Path) -> None:
    help_text = run_base("oreal.cli", "--help")
    assert help_text.returncode == 0, help_text.stderr
    for command in ("validate", "crd", "worker", "run"):
        assert command in help_text.stdout
    valid = run_base("oreal.cli", "validate", "examples/run.yaml")
    assert valid.returncode == 0, valid.stderr
    assert "valid OREALRun" in valid.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "examples" / "run.yaml").read_text().replace("samplesPerPrompt: 16", "samplesPerPrompt: 0")
    )
    invalid = run_base("oreal.cli", "validate", str(bad))
    assert invalid.returncode == 1 and "samplesPerPrompt" in invalid.stdout + invalid.stderr
    crd = run_base("oreal.cli", "crd")
    assert crd.returncode == 0, crd.stderr
    assert crd.stdout == (ROOT / "crds" / "orealrun.yaml").read_text()


def test_render_runs_without_the_worker_stack() -> None:
    from oreal.cli import build_parser

    (subparsers,) = [a for a in build_parser()._actions if a.dest == "command"]
    if "render" not in subparsers.choices:
        pytest.skip("`oreal render` is not there yet (issue #16 adds it)")
    rendered = run_base("oreal.cli", "render", "examples/run.yaml")
    assert rendered.returncode == 0, rendered.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert "ConfigMap" in kinds


@pytest.mark.parametrize(
    "argv",
    [
        ("worker", "rollout", "--run", "file:///nowhere"),
        ("run", "examples/quickstart.yaml"),
        ("reward-model", "fit", "--policy", "models/sft", "--data", "scored.jsonl", "--out", "rm"),
    ],
)
def test_worker_commands_name_the_extra_they_need(argv: tuple[str, ...]) -> None:
    result = run_base("oreal.cli", *argv)
    assert result.returncode == 1
    assert 'pip install "oreal[worker]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_operator_help_runs_without_the_worker_stack() -> None:
    result = run_base("oreal_operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "OREAL_WORKER_IMAGE" in result.stdout


def test_operator_imports_without_the_worker_stack() -> None:
    """What `python -m oreal_operator` imports before it starts Kopf: the handlers and everything below."""
    result = run_base("oreal_operator.handlers", env={"OREAL_WORKER_IMAGE": "example.org/oreal:test"})
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_module_of_the_project_shadows_a_standard_library_module():
    """A script named like a stdlib module (benchmarks/operator.py once) shadows it for everything
    imported after its folder lands on sys.path: TorchInductor's compile workers failed on it."""
    import sys

    root = Path(__file__).resolve().parents[1]
    folders = ("trainer", "operator", "benchmarks", "tests", "scripts")
    names = {p.stem for folder in folders for p in (root / folder).rglob("*.py")}
    names |= {
        p.name for folder in folders for p in (root / folder).rglob("*") if (p / "__init__.py").is_file()
    }
    assert sorted(names & set(sys.stdlib_module_names)) == []
