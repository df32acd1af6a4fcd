"""Keys are deterministic, zero-padded and parse back; part names are parsed strictly."""

from __future__ import annotations

import pytest

from oreal.bucket import layout
from oreal.bucket.layout import PartVersion


def test_keys_match_the_design() -> None:
    v = PartVersion(part=3, rows=256, size=901_234, crc32c="1a2b3c4d")
    assert v.name == "part-03.r256.s901234.c1a2b3c4d.parquet"
    assert layout.part_key("verdicts", 12, v) == "verdicts/step-000012/part-03.r256.s901234.c1a2b3c4d.parquet"
    assert layout.step_commit("rollouts", 7) == "rollouts/step-000007/_COMMITTED"
    assert layout.policy_commit(5) == "policy/v000005/_COMMITTED"
    assert layout.stats(42) == "stats/step-000042.json"
    wide = layout.part_key("rollouts", 1_234_567, PartVersion(123, 0, 1, "00000000"))
    assert wide.endswith("step-1234567/part-123.r0.s1.c00000000.parquet")


def test_parsers_invert_the_keys() -> None:
    assert layout.parse_step_dir("step-000123") == 123
    v = PartVersion(part=7, rows=0, size=301, crc32c="ffffffff")
    assert layout.parse_part_version(v.name) == v
    assert layout.parse_policy_dir("v000009") == 9
    assert layout.parse_policy_dir(".v000009.tmp") is None
    assert layout.parse_stats("step-000003.json") == 3


@pytest.mark.parametrize(
    "name",
    [
        "part-07.parquet",  # no manifest in the name
        "part-07.manifest.json",
        ".part-07.r1.s2.c0000000a.parquet.tmp-0123456789ab",  # a local writer's temp file
        "part-7.r1.s2.c0000000a.parquet",  # part not zero-padded
        "part-007.r1.s2.c0000000a.parquet",  # padded beyond two digits
        "part-07.r01.s2.c0000000a.parquet",  # leading zero
        "part-07.r1.s2.c0000000A.parquet",  # upper-case hex
        "part-07.r1.s2.c000000a.parquet",  # 7 hex digits
        "part-07.r1.s2.c0000000a.parquet.bak",
        "part-07.r-1.s2.c0000000a.parquet",
        "part-07.s2.r1.c0000000a.parquet",  # fields out of order
        "_COMMITTED",
    ],
)
def test_only_canonical_part_names_parse(name: str) -> None:
    assert layout.parse_part_version(name) is None


def test_trainer_output_keys() -> None:
    assert layout.checkpoint_dir(12) == "checkpoints/step-000012"
    assert layout.tree_commit(layout.checkpoint_dir(12)) == "checkpoints/step-000012/_COMMITTED"
    assert layout.tree_commit(layout.FINAL) == "final/_COMMITTED"
    assert layout.timing(3, "rollout", 1) == "timings/step-000003/rollout-01.json"
    assert layout.parse_timing("verifier-02.json") == ("verifier", 2)
    assert (
        layout.parse_timing("trainer-00.json") is None and layout.parse_timing(".rollout-01.json.tmp") is None
    )
    assert layout.eval_result(4, "math500") == "eval/step-000004/math500.json"
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            layout.eval_result(4, bad)
    with pytest.raises(ValueError):
        layout.timing(0, "trainer", 0)
