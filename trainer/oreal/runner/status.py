"""How a local run ended, recorded the way the operator records it on the resource.

`status.json` in the run folder (next to `logs/` and `report.html`) is an `OREALRunStatus` in the
one status vocabulary of `oreal.spec.status` (the resource's `.status` uses it too; DESIGN.md,
"Status and conditions"): the phase, and the condition that decides it, with Job reasons:
`Complete/Completed`, `Failed/DeadlineExceeded`,
`Failed/BackoffLimitExceeded` (a worker out of spec.maxRestarts), `Failed/PermanentError`,
`Suspended/Interrupted` (Ctrl-C). A run stopped for its deadline also gets the reason in the bucket's
`state.json` message (`DeadlineExceeded: ...`), so whoever reads only the bucket sees it; the next
commit of the trainer after a resume replaces that message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oreal.bucket import Bucket, RunState
from oreal.spec import OREALRunStatus
from oreal.spec import status as vocabulary
from oreal.spec.status import DEADLINE_EXCEEDED, utc_now
from oreal.spec.status_models import StepMetrics
from oreal.workers.report import last_metrics

STATUS_FILE = "status.json"
__all__ = [
    "DEADLINE_EXCEEDED",
    "STATUS_FILE",
    "StatusRecorder",
    "now",
    "record_stop_reason",
    "run_status",
    "write_status",
]


def now() -> str:
    """RFC 3339 UTC with a Z, as the resource's timestamps."""
    return utc_now()


def run_status(
    phase: str,
    reason: str,
    message: str,
    *,
    step: int,
    total_steps: int,
    restarts: int,
    start_time: str,
    policy_version: int | None = None,
    stats: Mapping[str, Any] | None = None,
) -> OREALRunStatus:
    """The status of a local run; the condition is Complete, Failed or Suspended by `phase`.

    `stats`: the last committed step's stats, read into lastMetrics as the operator reads the
    trainer's /status (`oreal.workers.report.last_metrics`: finite numbers only, so a step without
    a policy update has no loss there).
    """
    metrics = last_metrics(stats) if stats else {}
    condition_type = vocabulary.DECISIVE.get(phase, vocabulary.PROGRESSING)
    done = step + 1
    ended = phase in vocabulary.TERMINAL_PHASES
    return OREALRunStatus(
        phase=phase,
        conditions=[vocabulary.condition([], condition_type, True, reason, message, now=datetime.now(UTC))],
        step=step,
        total_steps=total_steps,
        progress_percentage=int(100 * max(done, 0) / total_steps) if total_steps else None,
        policy_version=policy_version,
        last_metrics=StepMetrics.model_validate(metrics) if metrics else None,
        restarts=restarts,
        start_time=start_time,
        completion_time=now() if ended else None,
    )


def write_status(run_dir: Path, status: OREALRunStatus) -> Path:
    path = run_dir / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(status.model_dump_json(by_alias=True, exclude_none=True, indent=1) + "\n")
    tmp.replace(path)
    return path


def record_stop_reason(bucket: Bucket, reason: str, message: str) -> RunState:
    """Put `REASON: message` into state.json, keeping its step and policy version.

    Only call this once every worker has stopped: while it runs, the trainer owns state.json.
    """
    state = bucket.read_state() or RunState()
    stopped = replace(state, message=f"{reason}: {message}")
    bucket.write_state(stopped)
    return stopped


@dataclass
class StatusRecorder:
    """Writes status.json from the bucket's state and last stats: `recorder(phase, reason, message)`."""

    run_dir: Path
    total_steps: int
    bucket: Bucket
    start_time: str
    supervisor: Any = None  # oreal.runner.processes.Supervisor: its restarts are the run's

    def __call__(self, phase: str, reason: str, message: str) -> Path:
        state = self.bucket.read_state()
        step = state.step if state else -1
        status = run_status(
            phase,
            reason,
            message,
            step=step,
            total_steps=self.total_steps,
            restarts=self.supervisor.restarts if self.supervisor else 0,
            start_time=self.start_time,
            policy_version=state.policy_version if state and step >= 0 else None,
            stats=self.bucket.read_stats(step) if step >= 0 else None,
        )
        return write_status(self.run_dir, status)
