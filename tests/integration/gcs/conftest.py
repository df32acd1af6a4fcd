"""A throw-away GCS JSON-API emulator (gcp-storage-emulator, in memory) on a free loopback port.

gcsfs and the emulator come with the project's dev extra (`pip install -e ".[dev]"`, which
scripts/test.sh runs); without them the tests skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

BUCKET = "bkt"
START_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gcp-storage-emulator did not listen on 127.0.0.1:{port} within {START_S} s")


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a running emulator holding bucket `bkt`; STORAGE_EMULATOR_HOST
    points at it for the whole session (gcsfs reads it when a filesystem is created)."""
    pytest.importorskip("gcsfs", reason="gcsfs is not installed (pip install -e '.[dev]')")
    pytest.importorskip(
        "gcp_storage_emulator",
        reason="gcp-storage-emulator is not installed (pip install -e '.[dev]')",
    )
    port = _free_port()
    # stdout/stderr to DEVNULL: an inherited pipe would keep a caller's `| tail` waiting on it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--default-bucket", BUCKET, "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        _wait_listening(port, proc)
        os.environ["STORAGE_EMULATOR_HOST"] = endpoint
        yield endpoint
    finally:
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def gcs_uri(gcs_endpoint: str) -> str:
    """A fresh run root in the emulator's bucket, one per test."""
    return f"gs://{BUCKET}/runs/{uuid.uuid4().hex[:10]}"
