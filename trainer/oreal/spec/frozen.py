"""The frozen spec of a run and which changes a started run may take.

The frozen spec is the canonical YAML of the validated OREALRun with `storage.uri` filled in: what
`oreal worker init` stores as `<bucket>/spec.yaml` and the operator mounts from the run's ConfigMap.

Once a run has started (its bucket holds policy v0), the spec may change only where the change
leaves the run's results alone (`MUTABLE_PATHS`): run control (suspend, maxRestarts,
activeDeadlineSeconds, as for Jobs), where and how each role's pods run (image, resources,
nodeSelector, tolerations, podTemplate), the bucket's Secret, the metrics port, and the run's
labels, annotations and namespace. Anything else would mix two runs in one bucket. `spec_conflict`
says why a change is refused; the CRD refuses the same changes at admission (CEL rules generated
from `MUTABLE_PATHS` by `oreal.spec.crd`) once the run's status shows it started.
"""

from __future__ import annotations

from typing import Any

import yaml

from oreal.spec.models import OREALRun

ROLES = ("rollout", "verifier", "trainer")
# Fields a Job lets one change between runs; a resumed run may change them without starting over.
RUN_CONTROL_FIELDS = ("suspend", "maxRestarts", "activeDeadlineSeconds")
# Where and how a role's pods run (e.g. more memory after an OOM kill, a new image, a PVC).
SCHEDULING_FIELDS = ("image", "resources", "nodeSelector", "tolerations", "podTemplate")
# Paths under `spec` (camelCase keys) that a started run may change.
MUTABLE_PATHS: tuple[tuple[str, ...], ...] = (
    *((field,) for field in RUN_CONTROL_FIELDS),
    ("metrics",),
    ("storage", "secretRef"),
    *((role, field) for role in ROLES for field in SCHEDULING_FIELDS),
)
# metadata keys a started run may change.
MUTABLE_METADATA = ("labels", "annotations", "namespace")
# libyaml's emitter when PyYAML has it (4x faster; the operator freezes every run it renders), else
# PyYAML's own: both write the same text (tests/spec/test_frozen.py), so stores compare equal.
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def frozen_spec(run: OREALRun, uri: str) -> str:
    """The spec as it is stored: canonical YAML with storage.uri filled in."""
    data = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    data["spec"].setdefault("storage", {})["uri"] = uri
    return yaml.dump(data, Dumper=DUMPER, sort_keys=True)


def spec_conflict(stored: str, frozen: str, source: str = "<stored spec>") -> str | None:
    """Why the frozen spec `frozen` may not replace `stored`, the spec of a started run (None: it may)."""
    from oreal.spec.loader import parse_run

    previous = parse_run(stored, source=source)
    before, after = results_part(previous), results_part(parse_run(frozen))
    if before == after:
        return None
    changed = ", ".join(changed_paths(before, after)) or "spec"
    return (
        f"it already holds run {previous.metadata.name!r} with a different spec ({changed} changed); "
        "to resume it use the same spec, to start over delete that folder or pick a new metadata.name"
    )


def results_part(run: OREALRun) -> dict[str, Any]:
    """The parts of a run that decide its results: all but MUTABLE_PATHS and MUTABLE_METADATA."""
    data = run.model_dump(by_alias=True, mode="json")
    data.pop("status", None)
    for key in MUTABLE_METADATA:
        data["metadata"].pop(key, None)
    for path in MUTABLE_PATHS:
        node = data["spec"]
        for key in path[:-1]:
            node = node.get(key) or {}
        node.pop(path[-1], None)
    return data


def changed_paths(before: object, after: object, path: str = "", depth: int = 3) -> list[str]:
    """Dotted camelCase paths (at most `depth` deep) where two JSON-like values differ."""
    if before == after:
        return []
    if depth == 0 or not (isinstance(before, dict) and isinstance(after, dict)):
        return [path]
    keys = sorted(set(before) | set(after))
    return [
        p
        for k in keys
        for p in changed_paths(before.get(k), after.get(k), f"{path}.{k}" if path else k, depth - 1)
    ]
