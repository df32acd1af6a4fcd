"""`oreal run RUN.yaml`: one whole run on this machine, the same workers as the pods, as processes.

The bucket defaults to ./runs/<name>/ (a folder). The runner writes the frozen spec, starts
rollout x R, verifier x V and one trainer with the flags the operator gives pods, shows progress,
restarts a crashed worker up to spec.maxRestarts times, stops everything on Ctrl-C, and resumes
where it stopped when started again. At the end it writes curves.png, report.html and status.json.

spec.activeDeadlineSeconds is enforced as a Job enforces it, except that the clock starts with
this `oreal run` invocation (a Job's starts with the Job): when it runs out the workers are
stopped as on Ctrl-C (committed steps stay), the run is recorded as Failed/DeadlineExceeded and
the runner exits with EXIT_DEADLINE. Running it again (with a later deadline or none) resumes.

Exit codes: 0 done, 1 failed (spec, bucket, a worker out of restarts), 2 a bad --rollout-python,
124 deadline exceeded, 130 interrupted.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from oreal import __version__
from oreal.bucket import Bucket, BucketError
from oreal.runner import interpreter
from oreal.runner.html_report import collect_stats, write_report
from oreal.runner.interpreter import InterpreterError
from oreal.runner.processes import RunFailed, Supervisor, WorkerProcess
from oreal.runner.progress import Display, StepProgress
from oreal.runner.status import (
    DEADLINE_EXCEEDED,
    StatusRecorder,
    now,
    record_stop_reason,
)
from oreal.spec import SpecError, load_run, parse_run
from oreal.spec.storage import StorageLocation, storage_location
from oreal.workers.init import SpecConflict, store_spec

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INTERPRETER = 2
EXIT_DEADLINE = 124  # as timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class RunnerError(RuntimeError):
    """Something the user must fix before the run can start."""


class DeadlineExceeded(RunFailed):
    """spec.activeDeadlineSeconds ran out."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DEADLINE_EXCEEDED)


@dataclass
class LocalRun:
    name: str
    location: StorageLocation
    run_dir: Path
    spec_text: str
    spec: object

    @property
    def uri(self) -> str:
        return self.location.uri


def prepare_run(
    spec_path: str, bucket_uri: str | None = None, runs_root: Path = Path("runs")
) -> tuple[LocalRun, Bucket]:
    """Load the spec, open the bucket, write (or check) the frozen spec."""
    run = load_run(spec_path)
    name = run.metadata.name
    run_dir = (runs_root / name).resolve()
    location = storage_location(bucket_uri or run.spec.storage.uri or run_dir.as_uri(), run.spec.storage)
    uri = location.uri
    if uri.startswith("file://") or "://" not in uri:
        run_dir = Path(uri.removeprefix("file://")).resolve()
    bucket = Bucket.at(location)
    try:
        text = store_spec(bucket, run, uri)
    except SpecConflict as err:
        raise RunnerError(str(err)) from None
    return LocalRun(name, location, run_dir, text, parse_run(text).spec), bucket


def free_ports(start: int, count: int) -> list[int]:
    """`count` ports from `start` upwards that nothing listens on (0 disables metrics)."""
    if start == 0:
        return [0] * count
    ports: list[int] = []
    port = start
    while len(ports) < count and port < 65536:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
                ports.append(port)
            except OSError:
                pass
        port += 1
    return ports + [0] * (count - len(ports))


def worker_command(role: str, uri: str, extra: list[str], python: str | None = None) -> list[str]:
    """The same command line a pod runs: `oreal worker ROLE --run URI ...` (via `python`, default this one)."""
    from oreal import cli

    python = python or sys.executable
    if "oreal.workers" in getattr(cli, "SUBCOMMAND_MODULES", ()):
        return [python, "-m", "oreal.cli", "worker", role, "--run", uri, *extra]
    return [python, "-m", "oreal.workers", role, "--run", uri, *extra]


def build_workers(
    lr: LocalRun, threads: int, metrics_port: int | None, rollout_python: str | None = None
) -> list[WorkerProcess]:
    """Rollout x R, verifier x V and the trainer; the rollout workers run under `rollout_python`."""
    spec = lr.spec
    R, V = spec.rollout.replicas, spec.verifier.replicas
    base = spec.metrics.port if metrics_port is None else metrics_port
    ports = free_ports(base, R + V + 1)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OREAL_RUN": lr.name,
        "OREAL_WORK_DIR": str(lr.run_dir / "work"),
        "OMP_WAIT_POLICY": "PASSIVE",
        # A local bucket is cheap to poll; each step passes three hand-offs between workers.
        "OREAL_POLL_SECONDS": os.environ.get(
            "OREAL_POLL_SECONDS", "0.2"
        ),  # idle torch threads must not spin while another role computes
        "TOKENIZERS_PARALLELISM": "false",
    }
    logs = lr.run_dir / "logs"
    workers = []

    env |= lr.location.env()  # the workers must reach the bucket before they can read the spec in it

    def add(
        name: str, role: str, extra: list[str], port: int, n_threads: int, python: str | None = None
    ) -> None:
        worker_env = env | {
            "OREAL_METRICS_PORT": str(port),
            "OREAL_NUM_THREADS": str(n_threads),
            "OMP_NUM_THREADS": str(n_threads),
        }
        workers.append(
            WorkerProcess(name, worker_command(role, lr.uri, extra, python), worker_env, logs / f"{name}.log")
        )

    for i in range(R):
        add(
            f"rollout-{i}",
            "rollout",
            ["--index", str(i), "--replicas", str(R)],
            ports[i],
            max(1, threads // R),
            rollout_python,
        )
    for i in range(V):
        add(f"verifier-{i}", "verifier", ["--index", str(i), "--replicas", str(V)], ports[R + i], 1)
    add("trainer", "trainer", [], ports[R + V], threads)
    return workers


def step_progress(bucket: Bucket, first: int, last: int, R: int, V: int) -> dict[int, StepProgress]:
    out = {}
    for step in range(first, last + 1):
        out[step] = StepProgress(
            rollout_parts=R if bucket.rollouts_committed(step) else len(bucket.rollout_parts_committed(step)),
            verdict_parts=V if bucket.verdicts_committed(step) else len(bucket.verdict_parts_committed(step)),
            trained=bucket.stats_written(step),
        )
    return out


def supervise(
    lr: LocalRun,
    bucket: Bucket,
    supervisor: Supervisor,
    display: Display,
    poll: float,
    deadline: float | None = None,
) -> None:
    """Watch the run until it is done; raises RunFailed, or DeadlineExceeded once
    `time.monotonic()` passes `deadline`."""
    spec = lr.spec
    R, V, steps = spec.rollout.replicas, spec.verifier.replicas, spec.algorithm.steps
    seen: dict[int, StepProgress] = {}
    stats: dict[int, dict] = {}
    while True:
        for event in supervisor.check():
            display.note(event)
        state = bucket.read_state()
        done_step = state.step if state else -1
        first = max(0, done_step)
        last = min(steps - 1, done_step + 1 + spec.algorithm.max_staleness)
        seen.update(step_progress(bucket, first, last, R, V))
        for step in range(done_step + 1):
            seen.setdefault(step, StepProgress(R, V, True)).trained = True
            if step not in stats:
                found = bucket.read_stats(step)
                if found is not None:
                    stats[step] = found
        display.update(seen, stats, supervisor.restarts)
        if state and state.done:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"spec.activeDeadlineSeconds ({spec.active_deadline_seconds} s) exceeded with "
                f"{done_step + 1} of {steps} steps committed"
            )
        if supervisor.all_exited_ok():
            raise RunFailed(
                f"every worker exited but the run is not marked done; see the logs in {lr.run_dir / 'logs'}",
                "WorkersExited",
            )
        time.sleep(poll)


def finish(lr: LocalRun, bucket: Bucket, started: float) -> Path:
    rows = collect_stats(bucket)
    facts = {
        "bucket": lr.uri,
        "steps": len(rows),
        "wall seconds (this session)": f"{time.time() - started:.0f}",
    }
    return write_report(lr.name, rows, lr.run_dir, facts)


def open_local_run(spec_path: str, bucket_uri: str | None) -> tuple[LocalRun, Bucket] | int:
    """The prepared run and its bucket, or EXIT_FAILED after one line on stderr."""
    try:
        return prepare_run(spec_path, bucket_uri)
    except (SpecError, RunnerError, BucketError) as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:
        print(f"error: cannot prepare the run folder: {err}", file=sys.stderr)
    return EXIT_FAILED


def nothing_to_do(lr: LocalRun, bucket: Bucket, display: Display, started: float) -> bool:
    """A finished or suspended run starts no worker."""
    state = bucket.read_state()
    if state and state.done:
        display.note(f"run {lr.name} is already complete ({lr.uri}); report: {finish(lr, bucket, started)}")
        return True
    if lr.spec.suspend:
        display.note(f"run {lr.name} is suspended (spec.suspend: true); nothing to do")
        return True
    return False


def announce(lr: LocalRun, bucket: Bucket, display: Display, python: str) -> None:
    state = bucket.read_state()
    resumed = f" (resuming after step {state.step})" if state and state.step >= 0 else ""
    display.note(f"run {lr.name}: {lr.spec.algorithm.steps} steps, bucket {lr.uri}{resumed}")
    if state and state.message:
        display.note(f"the previous session stopped: {state.message}")
    if python != sys.executable:
        display.note(f"rollout workers run with {python}")
    if lr.spec.active_deadline_seconds is not None:
        display.note(f"deadline: {lr.spec.active_deadline_seconds} s from now (spec.activeDeadlineSeconds)")


def run_workers(
    lr: LocalRun,
    bucket: Bucket,
    supervisor: Supervisor,
    display: Display,
    poll: float,
    deadline: float | None,
) -> tuple[int, RunFailed | None]:
    """Start the workers, watch them until the run ends, stop them; (exit code, failure)."""
    code, failure = EXIT_OK, None
    try:
        supervisor.start()
        with display:
            supervise(lr, bucket, supervisor, display, poll, deadline)
        grace = time.monotonic() + 60
        while any(w.running() for w in supervisor.workers) and time.monotonic() < grace:
            time.sleep(0.2)
    except KeyboardInterrupt:
        display.note("interrupted: stopping the workers; run the same command again to resume")
        code = EXIT_INTERRUPTED
    except DeadlineExceeded as err:
        failure, code = err, EXIT_DEADLINE
    except RunFailed as err:
        display.note(f"error: {err}")
        failure, code = err, EXIT_FAILED
    except BucketError as err:
        display.note(f"error: {err}")
        code = EXIT_FAILED
    finally:
        supervisor.stop()
    return code, failure


def record_outcome(
    code: int,
    failure: RunFailed | None,
    lr: LocalRun,
    bucket: Bucket,
    status: StatusRecorder,
    display: Display,
) -> None:
    """status.json (and, for a deadline, state.json's message) once every worker has stopped."""
    try:
        if code == EXIT_DEADLINE:
            record_stop_reason(bucket, DEADLINE_EXCEEDED, str(failure))
            status("Failed", DEADLINE_EXCEEDED, str(failure))
            display.note(
                f"deadline exceeded: {failure}; workers stopped, committed steps kept "
                f"(exit {EXIT_DEADLINE}); run it again to resume"
            )
        elif code == EXIT_OK:
            status("Succeeded", "Completed", f"all {lr.spec.algorithm.steps} steps committed")
        elif code == EXIT_INTERRUPTED:
            status("Suspended", "Interrupted", "stopped by Ctrl-C; run the same command again to resume")
        else:
            reason = failure.reason if failure is not None else "BucketError"
            status("Failed", reason, str(failure or "bucket error"))
    except (BucketError, OSError) as err:
        display.note(f"could not record the run's status: {err}")


def run_local(
    spec_path: str,
    bucket_uri: str | None = None,
    threads: int | None = None,
    metrics_port: int | None = None,
    poll: float = 0.5,
    rollout_python_path: str | None = None,
) -> int:
    """Run (or resume) a run on this machine; returns the exit code (EXIT_*)."""
    started, clock, start_time = time.time(), time.monotonic(), now()
    opened = open_local_run(spec_path, bucket_uri)
    if isinstance(opened, int):
        return opened
    lr, bucket = opened
    spec = lr.spec
    display = Display(spec.algorithm.steps, spec.rollout.replicas, spec.verifier.replicas)
    if nothing_to_do(lr, bucket, display, started):
        return EXIT_OK
    try:
        python = interpreter.rollout_python(
            rollout_python_path, spec.rollout.engine, __version__, sys.executable
        )
    except InterpreterError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INTERPRETER
    announce(lr, bucket, display, python)
    deadline = None if spec.active_deadline_seconds is None else clock + spec.active_deadline_seconds
    workers = build_workers(lr, threads or os.cpu_count() or 1, metrics_port, python)
    supervisor = Supervisor(workers, spec.max_restarts)
    status = StatusRecorder(lr.run_dir, spec.algorithm.steps, bucket, start_time, supervisor)
    try:
        status("Running", "Started", f"oreal run started {len(workers)} workers")
    except (BucketError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    code, failure = run_workers(lr, bucket, supervisor, display, poll, deadline)
    record_outcome(code, failure, lr, bucket, status, display)
    try:
        report = finish(lr, bucket, started)
        if code == EXIT_OK:
            display.note(f"run {lr.name} complete; report: {report}")
    except (BucketError, OSError) as err:
        display.note(f"could not write the report: {err}")
    return code
