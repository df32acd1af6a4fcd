"""What a round observes besides the caches: the trainer's report, and why pods failed.

    report_source(key, run, jobset)                 where a status tick reads the trainer's report
                                                    (`Controller.read_report`), None when the JobSet
                                                    does not run or the run serves no report
    observe_failures(ctl, key, jobset, memory)      once per gang restart and once when the JobSet
                                                    fails: the failed pods' termination message
    find_failure(api, namespace, name)              (message, exited with the permanent code)

The termination message is what the worker wrote to its termination log
(`oreal.workers.termination`), or the tail of its log after an unexpected crash. Pods of a gang
that restarts are deleted soon after: a message missed then is only missing from the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oreal.spec.models import OREALRun
from oreal_operator.api import Api
from oreal_operator.controller import Controller, Key, Memory
from oreal_operator.jobset import PERMANENT_EXIT_CODE
from oreal_operator.naming import RUN_LABEL
from oreal_operator.progress import report_url
from oreal_operator.status import gang_restarts, jobset_condition

MAX_MESSAGE_CHARS = 300


def one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def jobset_active(jobset: Mapping[str, Any] | None) -> bool:
    """The JobSet exists, is not suspended and has not finished: its pods may run."""
    return (
        jobset is not None
        and not (jobset.get("spec") or {}).get("suspend")
        and jobset_condition(jobset, "Completed") is None
        and jobset_condition(jobset, "Failed") is None
    )


def report_source(key: Key, run: OREALRun, jobset: Mapping[str, Any] | None) -> str | None:
    """The URL of the trainer's report while the JobSet runs and the run serves one, else None."""
    if jobset_active(jobset) and run.spec.metrics.port > 0:
        return report_url(key[1], key[0], run.spec.metrics.port)
    return None


async def observe_failures(
    ctl: Controller, key: Key, jobset: Mapping[str, Any] | None, memory: Memory
) -> None:
    """Read the failed pods once per gang restart and once when the JobSet fails."""
    if jobset is None:
        return
    restarts, failed = gang_restarts(jobset), jobset_condition(jobset, "Failed") is not None
    if memory.restarts_seen < 0:
        memory.restarts_seen = restarts  # restarts before this operator started are not news
    if restarts > memory.restarts_seen or (failed and not memory.failed_seen):
        memory.failure, memory.permanent = await find_failure(ctl.api, *key)
        memory.restarts_seen, memory.failed_seen = restarts, failed


async def find_failure(api: Api, namespace: str, name: str) -> tuple[str | None, bool]:
    """(the newest failed container's termination message, whether it exited with the permanent code)."""
    pods = await api.list("Pod", namespace, labels=f"{RUN_LABEL}={name}", fields="status.phase=Failed")
    newest: tuple[str, str, bool] | None = None  # (finishedAt, message, permanent)
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if (meta.get("labels") or {}).get(RUN_LABEL) != name or status.get("phase") != "Failed":
            continue
        for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            done = (c.get("state") or {}).get("terminated") or (c.get("lastState") or {}).get("terminated")
            if not done or not done.get("exitCode"):
                continue
            why = done.get("message") or done.get("reason") or ""
            text = one_line(f"{meta.get('name')}/{c.get('name')} exited with {done['exitCode']}: {why}")
            entry = (str(done.get("finishedAt") or ""), text, done["exitCode"] == PERMANENT_EXIT_CODE)
            if newest is None or entry[0] >= newest[0]:
                newest = entry
    return (newest[1], newest[2]) if newest else (None, False)
