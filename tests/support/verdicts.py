"""Verdicts decided by the test, not by what a tiny model happens to sample."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from oreal.trajectory import RolloutSample, Verdict


def alternating(sample: RolloutSample | Verdict) -> bool:
    """Even samples of every group correct, odd ones wrong: every group is learnable."""
    return sample.sample_index % 2 == 0


def decided(verdict: Verdict, correct: bool) -> Verdict:
    """`verdict` with the test's decision."""
    return dataclasses.replace(verdict, correct=correct, status="correct" if correct else "incorrect")


def inject_verdicts(bucket, step: int, correct: Callable[[RolloutSample], bool] = alternating) -> None:
    """Commit step `step`'s verdicts as one part, as the verifier would, with `correct` deciding."""
    verdicts = [
        decided(Verdict(step, s.prompt_id, s.sample_index, False, ""), correct(s))
        for s in bucket.read_rollouts(step)
    ]
    assert bucket.write_verdict_part(step, 0, verdicts)
    assert bucket.commit_verdicts(step, 1)


SCRIPTED = Path(__file__).parent / "scripted_verdicts"


def scripted_run_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a local run (a subprocess) whose verifier commits alternating verdicts
    (tests/support/scripted_verdicts/sitecustomize.py)."""
    tests = SCRIPTED.parent.parent  # the sitecustomize imports support.verdicts
    path = os.pathsep.join(p for p in (str(SCRIPTED), str(tests), env.get("PYTHONPATH", "")) if p)
    return dict(env, PYTHONPATH=path, OREAL_TEST_VERDICTS="alternating")
