"""How a local run ended, recorded the way the operator records it on the resource.

`status.json` in the run folder (next to `logs/` and `report.html`) is an `OREALRunStatus`: the
same phase and `metav1.Condition` vocabulary as the resource's `.status` (DESIGN.md, "Status and
conditions"), with Job reasons: `Complete/Completed`, `Failed/DeadlineExceeded`,
`Failed/BackoffLimitExceeded` (a worker out of spec.maxRestarts), `Failed/PermanentError`,
`Suspended/Interrupted` (Ctrl-C). A run stopped for its deadline also gets the reason in the bucket's
`state.json` message (`DeadlineExceeded: ...`), so whoever reads only the bucket sees it; the next
commit of the trainer after a resume replaces that message.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from oreal.bucket import Bucket, RunState
from oreal.spec import OREALRunStatus
from oreal.spec.models import Condition

STATUS_FILE = "status.json"
DEADLINE_EXCEEDED = "DeadlineExceeded"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_status(
    phase: str,
    reason: str,
    message: str,
    *,
    step: int,
    total_steps: int,
    restarts: int,
    start_time: str,
) -> OREALRunStatus:
    """The status of a local run; the condition is Complete, Failed or Suspended by `phase`."""
    condition_type = {"Succeeded": "Complete", "Failed": "Failed", "Suspended": "Suspended"}.get(
        phase, "Progressing"
    )
    done = step + 1
    ended = phase in ("Succeeded", "Failed")
    return OREALRunStatus(
        phase=phase,
        conditions=[
            Condition(
                type=condition_type,
                status="True",
                reason=reason,
                message=message,
                last_transition_time=now(),
            )
        ],
        step=step,
        total_steps=total_steps,
        progress_percentage=int(100 * max(done, 0) / total_steps) if total_steps else None,
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
