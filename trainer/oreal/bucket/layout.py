"""Deterministic keys of the run bucket (see DESIGN.md, "The bucket is the log").

```
spec.yaml
policy/v000000/...                      policy/v000000/_COMMITTED
rollouts/step-000000/part-00.parquet    rollouts/step-000000/part-00.manifest.json
rollouts/step-000000/_COMMITTED
verdicts/step-000000/...                (same shape as rollouts)
stats/step-000000.json
state.json
```
Steps and versions are zero-padded to 6 digits and parts to 2 (wider numbers simply grow), so
keys sort in order and a re-run writer always rewrites the same key.
"""

from __future__ import annotations

import re

SPEC = "spec.yaml"
STATE = "state.json"
COMMITTED = "_COMMITTED"
PART_KINDS = ("rollouts", "verdicts")

_STEP_DIR = re.compile(r"^step-(\d+)$")
_PART_MANIFEST = re.compile(r"^part-(\d+)\.manifest\.json$")
_POLICY_DIR = re.compile(r"^v(\d+)$")
_STATS = re.compile(r"^step-(\d+)\.json$")


def _check(n: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{what} must be a non-negative int, got {n!r}")
    return n


def step_dir(kind: str, step: int) -> str:
    if kind not in PART_KINDS:
        raise ValueError(f"unknown part kind {kind!r}; expected one of {PART_KINDS}")
    return f"{kind}/step-{_check(step, 'step'):06d}"


def part_data(kind: str, step: int, part: int) -> str:
    return f"{step_dir(kind, step)}/part-{_check(part, 'part'):02d}.parquet"


def part_manifest(kind: str, step: int, part: int) -> str:
    return f"{step_dir(kind, step)}/part-{_check(part, 'part'):02d}.manifest.json"


def step_commit(kind: str, step: int) -> str:
    return f"{step_dir(kind, step)}/{COMMITTED}"


def parse_part_manifest(name: str) -> int | None:
    m = _PART_MANIFEST.match(name)
    return int(m.group(1)) if m else None


def parse_step_dir(name: str) -> int | None:
    m = _STEP_DIR.match(name)
    return int(m.group(1)) if m else None


def policy_dir(version: int) -> str:
    return f"policy/v{_check(version, 'policy version'):06d}"


def policy_commit(version: int) -> str:
    return f"{policy_dir(version)}/{COMMITTED}"


def parse_policy_dir(name: str) -> int | None:
    m = _POLICY_DIR.match(name)
    return int(m.group(1)) if m else None


def stats(step: int) -> str:
    return f"stats/step-{_check(step, 'step'):06d}.json"


def parse_stats(name: str) -> int | None:
    m = _STATS.match(name)
    return int(m.group(1)) if m else None
