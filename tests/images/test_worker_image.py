"""The worker image's CPU variant (images/worker/Dockerfile with BASE, EXTRAS=worker and torch's CPU
build), built and run as a run pod runs it: uid 1000, read-only root, emptyDirs on /tmp, HOME and the
work dir, the spec mounted at /etc/oreal. Opt-in (a ~2 GB image, 1.5-3 minutes to build here):
OREAL_TEST_WORKER_IMAGE=1 pytest tests/images/test_worker_image.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from image_root import REPO, WORKER_CPU_IMAGE, ImageRoot, build

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("OREAL_TEST_WORKER_IMAGE") != "1",
        reason="opt-in: OREAL_TEST_WORKER_IMAGE=1 (builds a ~2 GB image)",
    ),
]
POD_VOLUMES = ("/tmp", "/home/oreal", "/var/lib/oreal")  # operator/oreal_operator/pods.py's emptyDirs


@pytest.fixture(scope="module")
def worker_image() -> str:
    seconds = build("base", "worker-cpu")
    print(f"worker-cpu image built in {seconds:.0f} s")
    return WORKER_CPU_IMAGE


def open_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_worker_commands_run_from_the_image(worker_image: str, tmp_path: Path) -> None:
    spec_dir, bucket = open_dir(tmp_path / "spec"), open_dir(tmp_path / "bucket")
    shutil.copy(REPO / "examples" / "quickstart.yaml", spec_dir / "spec.yaml")
    (spec_dir / "answers.jsonl").write_text(
        '{"gold": "\\\\frac{1}{2}", "response": "so the answer is \\\\boxed{0.5}"}\n'
        '{"gold": "3", "response": "\\\\boxed{4}"}\n'
    )
    binds = {"/etc/oreal": spec_dir, "/bucket": bucket}
    with ImageRoot(worker_image) as root:
        assert root.user()[0] == 1000
        init = root.run(
            ["oreal", "worker", "init", "--spec", "/etc/oreal/spec.yaml", "--run", "file:///bucket/run"],
            tmpfs=POD_VOLUMES,
            binds=binds,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        verify = root.run(
            [
                "oreal",
                "verify",
                "--input",
                "/etc/oreal/answers.jsonl",
                "--output",
                "/bucket/verdicts.jsonl",
                "--workers",
                "1",
            ],
            tmpfs=POD_VOLUMES,
            binds=binds,
        )
        tools = root.run(
            ["sh", "-c", "torchrun --help >/dev/null && python -c 'import torch; print(torch.__version__)'"]
        )
    assert yaml.safe_load((bucket / "run" / "spec.yaml").read_text())["metadata"]["name"] == "quickstart"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    verdicts = [json.loads(line) for line in (bucket / "verdicts.jsonl").read_text().splitlines()]
    assert [v["correct"] for v in verdicts] == [True, False]
    assert tools.returncode == 0 and tools.stdout.strip().endswith("+cpu"), tools.stdout + tools.stderr
