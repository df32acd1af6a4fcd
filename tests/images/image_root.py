"""Run a command from a locally built image the way a locked-down pod runs it, without a container
runtime: the image's root filesystem (`buildah mount`) read-only in a private mount namespace, /proc
and /dev, tmpfs or bind mounts where a pod has its volumes, then `chroot` as the image's USER with
exactly the image's environment, working directory and network of this machine (so a server on
127.0.0.1, such as kmock, is reachable). Needs root, buildah and util-linux's unshare.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, env=BUILDAH_ENV, timeout=600)
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def image_config(image: str) -> dict[str, Any]:
    """The OCI image config (Env, User, Entrypoint, Cmd, WorkingDir, Labels)."""
    return json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]


class ImageRoot:
    """`with ImageRoot(image) as root: subprocess.run(root.argv([...]))`."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.config = image_config(image)
        self.container = ""
        self.path = Path()

    def __enter__(self) -> ImageRoot:
        self.container = buildah("from", "--pull-never", self.image)
        self.path = Path(buildah("mount", self.container))
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run(["buildah", "umount", self.container], capture_output=True, env=BUILDAH_ENV)
        subprocess.run(["buildah", "rm", self.container], capture_output=True, env=BUILDAH_ENV)

    def user(self) -> tuple[int, int]:
        uid, _, gid = self.config.get("User", "0").partition(":")
        return int(uid), int(gid or uid)

    def argv(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        tmpfs: tuple[str, ...] = ("/tmp",),
        binds: dict[str, Path] | None = None,
    ) -> list[str]:
        """unshare + chroot argv running `command` (default: the image's entrypoint + cmd) read-only."""
        root = shlex.quote(str(self.path))
        image_env = dict(item.split("=", 1) for item in self.config.get("Env", []))
        variables = [f"{k}={v}" for k, v in {**image_env, **(env or {})}.items()]
        uid, gid = self.user()
        workdir = self.config.get("WorkingDir") or "/"
        lines = ["set -e"]
        for target in (*tmpfs, *(binds or {})):
            lines.append(f"mkdir -p {root}{shlex.quote(target)}")  # before the root becomes read-only
        lines += [
            f"mount --bind {root} {root}",
            f"mount -o remount,bind,ro {root}",
            f"mount -t proc proc {root}/proc",
            f"mount --rbind /dev {root}/dev",
        ]
        lines += [f"mount -t tmpfs -o mode=1777,size=256m tmpfs {root}{shlex.quote(t)}" for t in tmpfs]
        lines += [
            f"mount --bind {shlex.quote(str(h))} {root}{shlex.quote(t)}" for t, h in (binds or {}).items()
        ]
        inner = ["/usr/bin/env", "-i", *variables, "/bin/sh", "-c", 'cd "$0" && exec "$@"', workdir, *command]
        lines.append(
            f"exec chroot --userspec={uid}:{gid} --groups={gid} {root} "
            + " ".join(shlex.quote(a) for a in inner)
        )
        return ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", "\n".join(lines)]

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, **kwargs), capture_output=True, text=True, timeout=300)

    def entrypoint(self) -> list[str]:
        return list(self.config.get("Entrypoint") or [])


REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
OPERATOR_IMAGE = f"localhost/oreal-operator:{VERSION}"
WORKER_CPU_IMAGE = f"localhost/oreal-worker:{VERSION}-cpu"


def build(*steps: str) -> float:
    """Run scripts/build_images.sh STEPS; returns the seconds it took."""
    if os.geteuid() != 0:
        pytest.skip("building images with buildah needs root (CI runs as root)")
    missing = [tool for tool in ("buildah", "mmdebstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: run `bash scripts/install_system_tools.sh`", pytrace=False
        )
    start = time.monotonic()
    result = subprocess.run(
        ["bash", "scripts/build_images.sh", *steps], cwd=REPO, capture_output=True, text=True, timeout=3000
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return time.monotonic() - start
