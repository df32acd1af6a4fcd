"""Keys are deterministic, zero-padded and parse back."""

from __future__ import annotations

import pytest

from oreal.bucket import layout


def test_keys_match_the_design() -> None:
    assert layout.part_data("rollouts", 0, 0) == "rollouts/step-000000/part-00.parquet"
    assert layout.part_manifest("verdicts", 12, 3) == "verdicts/step-000012/part-03.manifest.json"
    assert layout.step_commit("rollouts", 7) == "rollouts/step-000007/_COMMITTED"
    assert layout.policy_commit(5) == "policy/v000005/_COMMITTED"
    assert layout.stats(42) == "stats/step-000042.json"
    assert layout.part_data("rollouts", 1_234_567, 123).endswith("step-1234567/part-123.parquet")


def test_parsers_invert_the_keys() -> None:
    assert layout.parse_step_dir("step-000123") == 123
    assert layout.parse_part_manifest("part-07.manifest.json") == 7
    assert layout.parse_part_manifest("part-07.parquet") is None
    assert layout.parse_policy_dir("v000009") == 9
    assert layout.parse_policy_dir(".v000009.tmp") is None
    assert layout.parse_stats("step-000003.json") == 3


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        layout.stats(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        layout.policy_dir(bad)  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown part kind"):
        layout.step_dir("prompts", 0)
