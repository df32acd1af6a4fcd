"""Why a worker stopped, where Kubernetes shows it: the container's termination log.

Exit codes, the same for every role and for `oreal worker init`:

    0    done: the run is complete (or init stored the spec)
    1    retriable: the bucket or the disk failed; a new pod may well succeed (the Job replaces
         the pod; a trainer's failure restarts the run's gang once, counted against maxRestarts)
    3    permanent: restarting cannot help until the spec or the data change (a spec the bucket
         refuses, bad data, a metrics port taken); the operator's podFailurePolicy fails the
         JobSet at once and the run is Failed with reason PermanentError
    130  stopped by SIGTERM/SIGINT (a pod deleted, a run suspended)

Before a worker exits with 1 or 3 it writes the one-line reason to the termination log,
`/dev/termination-log` (`$OREAL_TERMINATION_LOG` overrides the path, e.g. in tests), which the
kubelet copies into the pod's `status.containerStatuses[].state.terminated.message`; the
operator shows it as the message of the run's condition. An unexpected crash writes nothing:
the pods' `terminationMessagePolicy: FallbackToLogsOnError` makes the log's tail the message.
"""

from __future__ import annotations

import os

EXIT_OK, EXIT_ERROR, EXIT_PERMANENT, EXIT_INTERRUPTED = 0, 1, 3, 130
TERMINATION_LOG_ENV = "OREAL_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
MAX_BYTES = 4096  # the kubelet keeps at most 4096 bytes of a container's termination message


def path() -> str:
    return os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG


def write(message: str) -> bool:
    """Write `message` (one line, at most MAX_BYTES) to the termination log; False if there is none
    (outside a pod `/dev/termination-log` does not exist, and that is no error)."""
    target = path()
    if target == DEFAULT_TERMINATION_LOG and not os.path.exists(target):
        return False
    data = " ".join(message.split()).encode("utf-8")[:MAX_BYTES].decode("utf-8", "ignore")
    try:
        with open(target, "w", encoding="utf-8") as out:
            out.write(data)
    except OSError:
        return False
    return True
