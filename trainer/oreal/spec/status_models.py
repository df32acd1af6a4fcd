"""The status models of an OREALRun (`.status` on the resource, `status.json` of a local run).

The vocabulary written into them (phases, condition types, reasons) is `oreal.spec.status`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oreal.spec.base import SpecModel


class Condition(SpecModel):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class StepMetrics(SpecModel):
    pass_rate: float | None = None
    reward: float | None = None
    loss: float | None = None
    kl: float | None = None
    step_seconds: float | None = None


class OREALRunStatus(SpecModel):
    phase: Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"] | None = None
    conditions: list[Condition] = Field(default_factory=list)
    step: int | None = None
    total_steps: int | None = None
    progress_percentage: int | None = None
    policy_version: int | None = None
    last_metrics: StepMetrics | None = None
    restarts: int | None = None
    observed_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    worker_image: str | None = Field(
        default=None,
        description="The worker image fixed when the run was first rendered (roles without spec.<role>.image "
        "keep it across operator upgrades).",
    )
    render_version: int | None = Field(
        default=None, description="The operator's render version when the run's JobSet was created."
    )
