"""`spec.<role>.podTemplate`: what a platform changes in the pods the operator renders for a role.

The merge rule (the operator's `oreal_operator.overrides` applies it; `oreal render` shows the result):

- serviceAccountName, priorityClassName, affinity, topologySpreadConstraints: set on the pod as
  given (the operator sets none of them itself).
- acceleratorResource: the extended resource that carries the role's GPUs (default
  `nvidia.com/gpu`), e.g. `amd.com/gpu`.
- shmSize: `/dev/shm` becomes an in-memory emptyDir of that size (GPU pods get one without a size
  limit by default).
- securityContext (each container's) and podSecurityContext: replace the operator's whole, not
  merged key by key: copy the default from `oreal render` and change what the platform needs
  (OpenShift's restricted SCC: no runAsUser/runAsGroup/fsGroup; RDMA: capabilities.add IPC_LOCK).
- env: added to both containers after the operator's; an entry named like one of the operator's
  replaces it (e.g. OMP_NUM_THREADS), except the OREAL_* variables the workers rely on (refused).
- volumes: added; a volume named `work`, `tmp`, `home` or `dshm` replaces the operator's volume of
  that name (e.g. a PVC or an ephemeral volume for the work dir); `spec` is the operator's.
- volumeMounts: added to the worker container; a mountPath the operator uses is refused (replace
  the volume instead).
- labels, annotations: added to the pods; keys the operator sets are refused.

Objects the operator does not model (affinity, volumes, ...) are passed through to Kubernetes as
written; the API server checks them when the operator creates the JobSet, and refuses a bad one
(the run then shows SpecInvalid with the API server's message).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from oreal.spec.base import Quantity, SpecModel

DEFAULT_ACCELERATOR = "nvidia.com/gpu"


class PodTemplateOverrides(SpecModel):
    """Changes to one role's pod template (see the merge rule in `oreal.spec.podtemplate`)."""

    service_account_name: str | None = Field(
        default=None, description="The pods' service account (e.g. for IRSA or workload identity)."
    )
    priority_class_name: str | None = None
    affinity: dict[str, Any] | None = Field(default=None, description="A core/v1 Affinity.")
    topology_spread_constraints: list[dict[str, Any]] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(
        default_factory=list, description="core/v1 EnvVars for both containers (e.g. NCCL_* settings)."
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list, description="core/v1 Volumes; work, tmp, home or dshm replace the operator's."
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, description="core/v1 VolumeMounts of the worker container."
    )
    shm_size: Quantity | None = Field(default=None, description="Size of the in-memory /dev/shm.")
    security_context: dict[str, Any] | None = Field(
        default=None, description="Replaces the containers' securityContext whole."
    )
    pod_security_context: dict[str, Any] | None = Field(
        default=None, description="Replaces the pod's securityContext whole."
    )
    accelerator_resource: str | None = Field(
        default=None,
        min_length=1,
        description=f"Extended resource of the role's GPUs. Default: {DEFAULT_ACCELERATOR}.",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _named_entries(self) -> PodTemplateOverrides:
        for field, keys in (
            ("env", ("name",)),
            ("volumes", ("name",)),
            ("volumeMounts", ("name", "mountPath")),
        ):
            entries = getattr(self, _snake(field))
            for i, entry in enumerate(entries):
                for key in keys:
                    if not isinstance(entry.get(key), str) or not entry[key]:
                        raise ValueError(f"podTemplate.{field}[{i}] needs a {key}")
            names = [entry[keys[0]] for entry in entries]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated and field != "volumeMounts":
                raise ValueError(f"podTemplate.{field}: {', '.join(repeated)} given more than once")
        return self

    @property
    def accelerator(self) -> str:
        return self.accelerator_resource or DEFAULT_ACCELERATOR


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
