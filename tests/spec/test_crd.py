"""The CRD is generated from the models, is a valid CRD, and agrees with the models."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from crd_validation import validate_against_crd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oreal.spec import SpecError, run_from_dict
from oreal.spec.crd import crd_yaml


def test_committed_crd_equals_generated(repo_root: Path) -> None:
    committed = (repo_root / "crds" / "orealrun.yaml").read_text()
    assert committed == crd_yaml(), "crds/orealrun.yaml is stale: run `oreal crd -o crds/orealrun.yaml`"


def test_crd_is_a_valid_apiextensions_v1_object(crd: dict) -> None:
    kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)


def test_crd_names_status_and_printer_columns(crd: dict) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "orealruns.oreal.io"
    assert spec["names"]["shortNames"] == ["oreal"] and spec["scope"] == "Namespaced"
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Step": ".status.step",
        "Total": ".status.totalSteps",
        "Pass Rate": ".status.lastMetrics.passRate",
        "Age": ".metadata.creationTimestamp",
    }


def test_schema_is_structural(crd: dict) -> None:
    """Every node says its type (or is int-or-string); no anyOf/oneOf/$ref left over."""

    def walk(node: dict, path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}.{key}")

    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")


def test_every_example_is_accepted_by_models_and_crd(repo_root: Path, crd: dict) -> None:
    examples = sorted((repo_root / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "OREALRun":
                run_from_dict(doc, source=str(path))
                assert validate_against_crd(crd, doc) == [], path


def test_crd_defaults_equal_model_defaults(crd: dict, minimal: dict) -> None:
    """What the API server stores for a minimal spec equals what the workers parse."""
    from crd_validation import apply_defaults

    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaulted = apply_defaults(schema, copy.deepcopy(minimal))
    assert run_from_dict(defaulted) == run_from_dict(minimal)
    assert defaulted["spec"]["algorithm"]["policyOptimizer"]["lr"] == 5e-7
    assert defaulted["spec"]["sampling"]["topP"] == 0.9


BAD_SPECS = {
    "keep > samples": ("algorithm", {"keepPerPrompt": 20, "samplesPerPrompt": 8}),
    "keep as a word": ("algorithm", {"keepPerPrompt": "some"}),
    "warmup >= steps": ("algorithm", {"steps": 5, "warmupSteps": 5}),
    "minLr > lr": ("algorithm", {"policyOptimizer": {"lr": 1e-7, "minLr": 1e-6}}),
    "unknown algorithm": ("algorithm", {"name": "ppo"}),
    "zero steps": ("algorithm", {"steps": 0}),
    "unknown engine": ("rollout", {"engine": "sglang"}),
    "ZeRO 4": ("trainer", {"zeroStage": 4}),
    "top-p 0": ("sampling", {"topP": 0}),
    "eval without data": ("evaluation", {"every": 5}),
    "unknown field": ("sampling", {"temprature": 0.7}),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_are_rejected_by_both(case: str, crd: dict, minimal: dict) -> None:
    section, value = BAD_SPECS[case]
    minimal["spec"][section] = value
    with pytest.raises(SpecError):
        run_from_dict(minimal)
    assert validate_against_crd(crd, minimal) != []


def test_cross_section_rule_rejected_by_both(crd: dict, minimal: dict) -> None:
    minimal["spec"]["algorithm"] = {"promptsPerStep": 2}
    minimal["spec"]["rollout"] = {"replicas": 3}
    with pytest.raises(SpecError):
        run_from_dict(minimal)
    assert any(
        "rollout.replicas must be <= algorithm.promptsPerStep" in e
        for e in validate_against_crd(crd, minimal)
    )


algorithm_values = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["oreal", "grpo", "reinforce"]),
        "variant": st.sampled_from(["reference", "paper"]),
        "steps": st.integers(-2, 300),
        "warmupSteps": st.integers(-1, 20),
        "promptsPerStep": st.integers(0, 128),
        "samplesPerPrompt": st.integers(0, 32),
        "keepPerPrompt": st.one_of(st.integers(0, 40), st.just("all")),
        "klCoef": st.floats(-0.1, 1.0, allow_nan=False),
        "tokenWeights": st.booleans(),
        "policyOptimizer": st.fixed_dictionaries(
            {"lr": st.floats(-1e-6, 1e-5, allow_nan=False), "minLr": st.floats(0, 1e-5, allow_nan=False)}
        ),
    },
)
sampling_values = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(-0.5, 2.0, allow_nan=False),
        "topP": st.floats(-0.1, 1.2, allow_nan=False),
        "topK": st.integers(-3, 50),
        "maxNewTokens": st.integers(-1, 9000),
    },
)
rollout_values = st.fixed_dictionaries(
    {}, optional={"replicas": st.integers(0, 100), "engine": st.sampled_from(["vllm", "hf", "trt"])}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algorithm=algorithm_values, sampling=sampling_values, rollout=rollout_values)
def test_models_and_crd_agree_and_valid_specs_round_trip(
    crd: dict, minimal: dict, algorithm: dict, sampling: dict, rollout: dict
) -> None:
    doc = copy.deepcopy(minimal)
    doc["spec"].update(algorithm=algorithm, sampling=sampling, rollout=rollout)
    try:
        run = run_from_dict(doc)
    except SpecError:
        accepted = False
    else:
        accepted = True
        manifest = run.to_manifest()
        assert run_from_dict(yaml.safe_load(yaml.safe_dump(manifest))) == run
        assert validate_against_crd(crd, manifest) == []
    assert (validate_against_crd(crd, doc) == []) == accepted
