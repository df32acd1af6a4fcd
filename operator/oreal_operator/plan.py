"""What to write so that the live children match the rendered ones (pure: objects in, steps out).

    plan_configmap(desired, live, owner_uid) -> [Step]
    plan_jobset(desired, live, owner_uid, *, queued) -> [Step]

ConfigMap: created when missing; its data and our labels patched back when they differ.

JobSet (desired None: the run should have none, e.g. a queued run that is suspended):

- missing: create it; being deleted: wait (its deletion event brings the next round);
- its spec hash (`render.SPEC_HASH`) differs: the run's spec changed in what the JobSet is made
  of (image, resources, replicas, queue, ...). A JobSet's replicatedJobs are immutable, so it is
  deleted (foreground: its Jobs and pods go first) and created anew in a later round: the gang
  restarts once, on purpose;
- rendered by this operator's render version and its spec no longer covers what was rendered
  (`drift.covers`: someone edited it): delete and re-create the same way;
- rendered by another render version (an operator upgrade): its spec is left alone, so an
  upgrade never restarts a running run;
- in place (merge patch): our labels and annotations, and `spec.suspend` for a run without a
  Kueue queue. A queued JobSet's suspend belongs to Kueue: the operator creates it suspended
  and never resumes it.

An object of the same name that the run does not control raises ForeignObjectError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oreal_operator.drift import covers, drifted
from oreal_operator.errors import ForeignObjectError
from oreal_operator.naming import controlled_by
from oreal_operator.packing import Packed, unpack
from oreal_operator.render import RENDERED_BY, SPEC_HASH


@dataclass(frozen=True)
class Step:
    verb: str  # create | patch | delete
    kind: str
    name: str
    body: dict[str, Any] | None = None  # the object (create; a JobSet packed) or a merge patch (patch)
    why: str = ""


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _annotation(obj: Mapping[str, Any] | None, key: str) -> str | None:
    return (_meta(obj).get("annotations") or {}).get(key)


def _check_owner(live: Mapping[str, Any], owner_uid: str | None) -> None:
    if not controlled_by(live, owner_uid):
        meta = _meta(live)
        raise ForeignObjectError(
            f"{live.get('kind', 'object')} {meta.get('namespace')}/{meta.get('name')} exists and is not "
            "controlled by this OREALRun; delete or rename it, the operator will not change it"
        )


def metadata_patch(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch setting the rendered labels and annotations that `live` lacks or differs in."""
    patch: dict[str, Any] = {}
    for key in ("labels", "annotations"):
        want = _meta(desired).get(key) or {}
        have = _meta(live).get(key) or {}
        changed = {k: v for k, v in want.items() if have.get(k) != v}
        if changed:
            patch.setdefault("metadata", {})[key] = changed
    return patch


def _unpacked(spec: Mapping[str, Any]) -> dict[str, Any]:
    return unpack({"spec": spec})["spec"]


def plan_configmap(
    desired: Mapping[str, Any], live: Mapping[str, Any] | None, owner_uid: str | None
) -> list[Step]:
    name = desired["metadata"]["name"]
    if live is None:
        return [Step("create", "ConfigMap", name, dict(desired), "missing")]
    _check_owner(live, owner_uid)
    patch = metadata_patch(desired, live)
    if (live.get("data") or {}) != desired["data"]:
        patch["data"] = desired["data"]
    return [Step("patch", "ConfigMap", name, patch, "the frozen spec changed")] if patch else []


def plan_jobset(
    desired: Mapping[str, Any] | None,
    live: Mapping[str, Any] | None,
    owner_uid: str | None,
    *,
    queued: bool,
    check_drift: bool = True,
) -> list[Step]:
    """The steps for the JobSet (see the module docstring). `check_drift=False` skips comparing the
    live spec field by field: the caller compared this very live object with this rendering before."""
    if live is None:
        if desired is None:
            return []
        # packed as the cache keeps it: `api.Api` writes its packed fields from their JSON text
        return [Step("create", "JobSet", desired["metadata"]["name"], dict(desired), "missing")]
    _check_owner(live, owner_uid)
    name = _meta(live)["name"]
    if _meta(live).get("deletionTimestamp"):
        return []  # its deletion's event starts the next round
    if desired is None:
        return [Step("delete", "JobSet", name, why="the run is stopped")]
    if _annotation(live, SPEC_HASH) != _annotation(desired, SPEC_HASH):
        return [
            Step("delete", "JobSet", name, why="the run's spec changed: re-created, the gang restarts once")
        ]
    if check_drift and _annotation(live, RENDERED_BY) == _annotation(desired, RENDERED_BY):
        # Packed fields equal as bytes hold equal values: only the others are compared field by field.
        spec = live.get("spec") if isinstance(live.get("spec"), Mapping) else {}
        same = {k for k, v in desired["spec"].items() if isinstance(v, Packed) and spec.get(k) == v}
        want = _unpacked({k: v for k, v in desired["spec"].items() if k != "suspend" and k not in same})
        have = _unpacked({k: v for k, v in spec.items() if k not in same})
        if not covers(want, have):
            where = ", ".join(f"spec.{p}" for p in drifted(want, have))
            return [Step("delete", "JobSet", name, why=f"edited by hand ({where}): re-created as rendered")]
    patch = metadata_patch(desired, live)
    suspend = bool(desired["spec"].get("suspend"))
    if not queued and bool((live.get("spec") or {}).get("suspend")) != suspend:
        patch["spec"] = {"suspend": suspend}
    return [Step("patch", "JobSet", name, patch, "suspend" if "spec" in patch else "labels")] if patch else []
