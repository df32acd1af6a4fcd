"""Supervise the worker processes of a local run: start, restart on failure, stop cleanly.

Each worker runs in its own session (process group), so Ctrl-C reaches only the runner, which
then sends SIGTERM to every worker's group (the verifier's sandbox processes included), waits,
and SIGKILLs what is left. On Linux each worker also gets PR_SET_PDEATHSIG, so even a runner
killed with SIGKILL leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

EXIT_PERMANENT = 3  # a worker's "fix the input, restarting will not help" exit code


class RunFailed(RuntimeError):
    """A worker failed for good (restarts exhausted or a permanent error).

    `reason` is the CamelCase reason recorded in the run's Failed condition.
    """

    def __init__(self, message: str, reason: str = "Failed") -> None:
        super().__init__(message)
        self.reason = reason


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


@dataclass
class WorkerProcess:
    """One worker: its command line, environment, log file and restart count."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    restarts: int = 0
    exit_code: int | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self.exit_code = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def poll(self) -> int | None:
        if self.process is None:
            return self.exit_code
        code = self.process.poll()
        if code is not None:
            self.exit_code = code
        return code

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


class Supervisor:
    """Keep the workers alive: a worker that exits non-zero is restarted up to `max_restarts`."""

    def __init__(self, workers: list[WorkerProcess], max_restarts: int) -> None:
        self.workers = workers
        self.max_restarts = max_restarts

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def check(self) -> list[str]:
        """Restart failed workers; returns messages about restarts. Raises RunFailed when out of tries."""
        events = []
        for worker in self.workers:
            if worker.process is None or worker.running():
                continue
            code = worker.poll()
            if code == 0:
                continue
            if code == EXIT_PERMANENT:
                raise RunFailed(
                    f"{worker.name} stopped with an error (exit {code}):\n{worker.tail()}", "PermanentError"
                )
            if worker.restarts >= self.max_restarts:
                raise RunFailed(
                    f"{worker.name} failed {worker.restarts + 1} times (exit {code}); "
                    f"spec.maxRestarts is {self.max_restarts}. Last log lines:\n{worker.tail()}",
                    "BackoffLimitExceeded",
                )
            worker.restarts += 1
            events.append(f"{worker.name} exited with {code}; restart {worker.restarts}/{self.max_restarts}")
            worker.start()
        return events

    def all_exited_ok(self) -> bool:
        return all(w.process is not None and not w.running() and w.poll() == 0 for w in self.workers)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM every worker's process group, wait up to `grace_seconds`, then SIGKILL."""
        live = [w for w in self.workers if w.running()]
        for worker in live:
            worker.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for worker in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            # Also reap helpers a worker left in its group (e.g. verifier sandboxes).
            worker.signal_group(signal.SIGKILL)
            if worker.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=5)
