"""`oreal render RUN.yaml`: prints what the operator creates, or one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from oreal.spec import load_run
from oreal_operator.render import RenderOptions, render_run

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/oreal-worker:1.2"


def oreal(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "oreal.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_render_prints_exactly_what_the_operator_renders() -> None:
    done = oreal("render", "examples/run.yaml", "--namespace", "team-a", "--image", IMAGE)
    assert done.returncode == 0, done.stderr
    printed = [d for d in yaml.safe_load_all(done.stdout) if d]
    expected = render_run(
        load_run(ROOT / "examples" / "run.yaml"), RenderOptions(image=IMAGE, namespace="team-a")
    )
    assert printed == expected
    assert [d["kind"] for d in printed] == ["ConfigMap", "JobSet"]


def test_the_namespace_defaults_to_the_runs() -> None:
    done = oreal("render", "examples/run.yaml", "--image", IMAGE)
    run = load_run(ROOT / "examples" / "run.yaml")
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(done.stdout) if d} == {
        run.metadata.namespace
    }


def test_a_spec_that_cannot_run_on_a_cluster_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = oreal("render", "examples/quickstart.yaml")
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: examples/quickstart.yaml: spec.storage.uri ")
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "run.yaml").read_text().replace("replicas: 4", "replicas: four", 1))
    done = oreal("render", str(bad))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "spec.rollout.replicas" in done.stderr
