"""What a run's trainer reports in-cluster: `GET /status` beside `/metrics` on the metrics port.

The operator reads no bucket (it holds no tenant credentials): the run's progress comes from
the trainer's global rank 0, which fills this board when it resumes and after every committed
step. Every worker serves `/status`; the others' boards stay empty. The JSON uses the names of
the resource's `.status`:

    {"run": "qwen7b", "role": "trainer", "started": true, "step": 3, "totalSteps": 90,
     "policyVersion": 4, "done": false, "updated": "2026-01-01T00:00:00Z",
     "lastMetrics": {"passRate": 0.6, "reward": 0.2, "loss": 0.1, "kl": 0.01, "stepSeconds": 42.0}}

`started` is true once policy v0 is in the bucket (the run's spec is then fixed for good);
`step` is the last committed step (null before the first).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

STATUS_PATH = "/status"
# stats/step-N.json key (as the trainer writes it) -> lastMetrics key; the first key found wins.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "passRate": ("pass_rate",),
    "reward": ("reward",),
    "loss": ("loss/policy", "loss"),
    "kl": ("kl",),
    "stepSeconds": ("wall_seconds", "step_seconds"),
}


def last_metrics(stats: Mapping[str, Any]) -> dict[str, float]:
    """lastMetrics from a step's stats: finite numbers only."""
    out: dict[str, float] = {}
    for name, keys in METRIC_KEYS.items():
        value = next((stats[k] for k in keys if k in stats), None)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[name] = number
    return out


class ProgressBoard:
    """The trainer's progress as `/status` serves it (thread-safe: the HTTP server reads it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"started": False, "step": None, "done": False}

    def _update(self, **fields: Any) -> None:
        with self._lock:
            self._state |= fields | {"updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def resumed(self, run: str, total_steps: int, next_step: int) -> None:
        """Policy v0 is committed and training resumes at `next_step` (0 for a new run)."""
        step = next_step - 1 if next_step > 0 else None
        self._update(
            run=run, role="trainer", started=True, totalSteps=total_steps, step=step, policyVersion=next_step
        )

    def committed(self, step: int, stats: Mapping[str, Any], *, total_steps: int) -> None:
        """Step `step` is committed (policy v(step+1) published); `stats` as written to the bucket."""
        done = step + 1 >= total_steps
        self._update(
            started=True,
            step=step,
            totalSteps=total_steps,
            policyVersion=step + 1,
            done=done,
            lastMetrics=last_metrics(stats),
        )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)


BOARD = ProgressBoard()

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_status(metrics_app: WsgiApp, board: ProgressBoard | None = None) -> WsgiApp:
    """A WSGI app serving `board` (default: this process's BOARD) at /status, the rest from `metrics_app`."""
    board = board or BOARD

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != STATUS_PATH:
            return metrics_app(environ, start_response)
        body = json.dumps(board.snapshot(), sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes every few seconds would drown the worker's log."""


def serve(port: int, metrics_app: WsgiApp, board: ProgressBoard | None = None) -> WSGIServer:
    """Serve /metrics (from `metrics_app`) and /status on 0.0.0.0:`port` in a daemon thread.
    Raises OSError when the port cannot be bound."""
    app = with_status(metrics_app, board)
    server = make_server("0.0.0.0", port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=f"metrics:{port}", daemon=True).start()
    return server
