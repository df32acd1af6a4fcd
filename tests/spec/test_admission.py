"""What the API server refuses at admission (the CRD's CEL rules on the whole resource), and that
it refuses exactly the edits of a started run that `oreal.spec.frozen.spec_conflict` refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from crd_validation import validate_against_crd

from oreal.spec import run_from_dict
from oreal.spec.crd import MAX_RUN_NAME
from oreal.spec.frozen import MUTABLE_PATHS, frozen_spec, spec_conflict

URI = "s3://runs/ml/tiny"


@pytest.fixture
def run(minimal: dict) -> dict:
    minimal["metadata"]["namespace"] = "ml"
    minimal["spec"]["storage"] = {"uri": URI}
    return minimal


def started(doc: dict) -> dict:
    return {**copy.deepcopy(doc), "status": {"phase": "Running", "policyVersion": 3, "step": 2}}


def edited(doc: dict, path: str, value: Any) -> dict:
    out = copy.deepcopy(doc)
    node = out
    *keys, last = path.split(".")
    for key in keys:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def refused_by_bucket(old: dict, new: dict) -> bool:
    """`oreal worker init` would refuse `new` over the stored spec of `old` (a started run)."""

    def frozen(doc: dict) -> str:
        parsed = run_from_dict(copy.deepcopy(doc))
        return frozen_spec(parsed, parsed.spec.storage.uri)

    return spec_conflict(frozen(old), frozen(new)) is not None


def test_the_name_must_leave_room_for_the_jobs_and_pods(crd: dict, run: dict) -> None:
    assert validate_against_crd(crd, edited(run, "metadata.name", "r" * MAX_RUN_NAME)) == []
    errors = validate_against_crd(crd, edited(run, "metadata.name", "r" * (MAX_RUN_NAME + 1)))
    assert errors == [f"<root>: metadata.name must be at most {MAX_RUN_NAME} characters: the names of the "
                      "run's JobSet, Jobs and pods are made from it"]  # fmt: skip


ALLOWED = [
    ("spec.suspend", True),
    ("spec.maxRestarts", 7),
    ("spec.activeDeadlineSeconds", 600),
    ("spec.metrics", {"port": 0}),
    ("spec.storage.secretRef", {"name": "other-creds"}),
    ("spec.trainer.image", "registry.example/oreal:2"),
    ("spec.rollout.resources", {"limits": {"memory": "64Gi"}}),
    ("spec.verifier.nodeSelector", {"pool": "cpu"}),
    ("spec.trainer.tolerations", [{"key": "gpu", "operator": "Exists"}]),
    (
        "spec.trainer.podTemplate",
        {"serviceAccountName": "irsa", "env": [{"name": "NCCL_DEBUG", "value": "INFO"}]},
    ),
    ("metadata.labels", {"team": "rl"}),
]
REFUSED = [
    ("spec.algorithm.steps", 40, "spec.algorithm"),
    ("spec.model.policy", "/models/other", "spec.model"),
    ("spec.data.prompts", "/data/other.jsonl", "spec.data"),
    ("spec.storage.uri", "s3://runs/ml/elsewhere", "spec.storage"),
    ("spec.storage.endpoint", "http://minio:9000", "spec.storage"),
    ("spec.sampling.temperature", 0.5, "spec.sampling"),
    ("spec.rollout.replicas", 2, "spec.rollout"),
    ("spec.verifier.workers", 4, "spec.verifier"),
    ("spec.verifier.judge", {"endpoint": "http://judge", "model": "m"}, "spec.verifier"),
    ("spec.trainer.nodes", 2, "spec.trainer"),
    ("spec.checkpoint.every", 5, "spec.checkpoint"),
    ("spec.evaluation", {"every": 5, "datasets": ["/data/math500.jsonl"]}, "spec.evaluation"),
]


@pytest.mark.parametrize(("path", "value"), ALLOWED, ids=[p for p, _ in ALLOWED])
def test_a_started_run_may_change_what_leaves_its_results_alone(
    crd: dict, run: dict, path: str, value: Any
) -> None:
    old, new = started(run), started(edited(run, path, value))
    assert validate_against_crd(crd, new, old=old) == []
    assert not refused_by_bucket(run, edited(run, path, value))


@pytest.mark.parametrize(("path", "value", "section"), REFUSED, ids=[p for p, _, _ in REFUSED])
def test_a_started_run_may_not_change_its_results(
    crd: dict, run: dict, path: str, value: Any, section: str
) -> None:
    old, new = started(run), started(edited(run, path, value))
    errors = validate_against_crd(crd, new, old=old)
    assert len(errors) == 1 and errors[0].startswith(f"<root>: {section}: ")
    assert "cannot change once the run has started" in errors[0]
    assert refused_by_bucket(run, edited(run, path, value))  # the workers' init agrees
    # before it started (no policy version in its status yet), anything goes
    assert validate_against_crd(crd, edited(run, path, value), old=run) == []


def test_every_mutable_path_has_a_case_here() -> None:
    covered = {".".join(p.split(".")[1:]) for p, _ in ALLOWED if p.startswith("spec.")}
    sections = {".".join(path) for path in MUTABLE_PATHS}
    # each mutable field is exercised for at least one role
    assert {s.split(".", 1)[-1] for s in sections} <= {c.split(".", 1)[-1] for c in covered} | {
        "nodeSelector"
    }
