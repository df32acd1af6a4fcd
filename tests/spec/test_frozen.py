"""The frozen spec with either YAML emitter (libyaml's, used where PyYAML has it, or PyYAML's own):
the same text for the examples, and for any text the same run back, which a started run's bucket
accepts whichever emitter wrote its spec.yaml (`spec_conflict` compares runs, not bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from oreal.spec import load_run, run_from_dict
from oreal.spec.frozen import frozen_spec, spec_conflict
from oreal.spec.loader import parse_run

ROOT = Path(__file__).resolve().parents[2]
RUNS = [p for p in sorted((ROOT / "examples").rglob("*.yaml")) if "kind: OREALRun" in p.read_text()]


def pure(run, uri: str) -> str:
    data = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["spec"].setdefault("storage", {})["uri"] = uri
    return yaml.safe_dump(data, sort_keys=True)


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_every_example_freezes_to_the_same_text_with_either_emitter(path: Path) -> None:
    run = load_run(path)
    assert frozen_spec(run, "s3://b/r") == pure(run, "s3://b/r")


@settings(max_examples=40, deadline=None)
@given(
    template=st.text(min_size=0, max_size=300).map(
        lambda t: t.replace("{", "").replace("}", "") + " {problem}"
    ),
    system=st.one_of(st.none(), st.text(max_size=200)),
    label=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=80),
)
def test_any_text_freezes_to_the_same_run_with_either_emitter(
    template: str, system: str | None, label: str
) -> None:
    minimal = {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": "tiny"},
        "spec": {"model": {"policy": "/models/p"}, "data": {"prompts": "/data/p.jsonl"}},
    }
    minimal["spec"]["data"]["promptTemplate"] = template
    if system is not None:
        minimal["spec"]["data"]["systemPrompt"] = system
    minimal["metadata"]["annotations"] = {"note": label}
    run = run_from_dict(minimal)
    fast, slow = frozen_spec(run, "s3://b/r"), pure(run, "s3://b/r")
    assert (
        parse_run(fast).spec
        == parse_run(slow).spec
        == run.spec.model_copy(update={"storage": run.spec.storage.model_copy(update={"uri": "s3://b/r"})})
    )
    assert spec_conflict(fast, slow) is None and spec_conflict(slow, fast) is None
