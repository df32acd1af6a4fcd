"""What the local runner shows: one progress bar per step and a live line of metrics.

A step's bar counts its committed rollout parts, verdict parts and the trainer's update. When
the output is not a terminal the same information is printed as one line per finished step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from oreal.step_outcome import describe_step

VISIBLE_STEPS = 6


@dataclass
class StepProgress:
    rollout_parts: int = 0
    verdict_parts: int = 0
    trained: bool = False


def metrics_line(stats: dict[str, Any] | None, restarts: int = 0) -> str:
    if not stats:
        return "waiting for the first step..."
    parts = [f"step {int(stats.get('step', 0))}"]
    for key, label, fmt in (
        ("pass_rate", "pass", "{:.3f}"),
        ("reward", "reward", "{:+.3f}"),
        ("loss/policy", "loss", "{:.4f}"),
        ("kl", "KL", "{:.4f}"),
        ("wall_seconds", "step s", "{:.1f}"),
    ):
        if key in stats:
            parts.append(f"{label} {fmt.format(float(stats[key]))}")
    why = describe_step(stats)  # a step without a policy update says so instead of showing a loss
    if why:
        parts.append(why)
    if restarts:
        parts.append(f"restarts {restarts}")
    return " | ".join(parts)


@dataclass
class Display:
    """Rich live display (TTY) or plain lines (logs, CI)."""

    total_steps: int
    rollout_parts: int
    verdict_parts: int
    console: Console = field(default_factory=lambda: Console(stderr=True))
    live: Live | None = None
    progress: Progress | None = None
    tasks: dict[int, int] = field(default_factory=dict)
    printed: set[int] = field(default_factory=set)
    line: str = ""

    @property
    def per_step(self) -> int:
        return self.rollout_parts + self.verdict_parts + 1

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.live = Live(self._render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def _render(self):
        parts = [self.progress] if self.progress is not None else []
        return Group(*parts, Text(self.line, style="bold"))

    def update(self, steps: dict[int, StepProgress], stats: dict[int, dict[str, Any]], restarts: int) -> None:
        """Redraw: `steps` is what is committed per step, `stats` the trainer's stats per finished step."""
        latest = stats[max(stats)] if stats else None
        self.line = metrics_line(latest, restarts)
        if self.progress is None:
            for step in sorted(stats):
                if step not in self.printed:
                    self.printed.add(step)
                    print(
                        f"[{step + 1}/{self.total_steps}] {metrics_line(stats[step], restarts)}",
                        file=sys.stderr,
                        flush=True,
                    )
            return
        for step in sorted(steps):
            p = steps[step]
            completed = p.rollout_parts + p.verdict_parts + int(p.trained)
            if step not in self.tasks:
                self.tasks[step] = self.progress.add_task(
                    f"step {step + 1}/{self.total_steps}", total=self.per_step
                )
            self.progress.update(self.tasks[step], completed=completed)
        shown = sorted(self.tasks)[-VISIBLE_STEPS:]
        for step, task in self.tasks.items():
            self.progress.update(task, visible=step in shown)
        self.live.update(self._render())

    def note(self, message: str) -> None:
        if self.progress is None:
            print(message, file=sys.stderr, flush=True)
        else:
            self.console.print(message)
