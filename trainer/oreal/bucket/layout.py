"""Deterministic keys of the run bucket (see DESIGN.md, "The bucket is the log").

```
spec.yaml
policy/v000000/...                      policy/v000000/_COMMITTED
rollouts/step-000000/part-00.r256.s901234.c1a2b3c4d.parquet    (one object per part version)
rollouts/step-000000/_COMMITTED
verdicts/step-000000/...                (same shape as rollouts)
stats/step-000000.json                  the trainer's metrics of the step
timings/step-000000/rollout-00.json     each rollout and verifier replica's phase times
eval/step-000000/<dataset>.json         evaluation results after the step
checkpoints/step-000000/...             resumable trainer state; checkpoints/step-000000/_COMMITTED
final/policy/..., final/reward_model/...   the last step's weights; final/_COMMITTED
state.json
```
Nothing outside `oreal.bucket` composes a key: these functions are the only place keys are made.
Steps and versions are zero-padded to 6 digits and parts to 2 (wider numbers simply grow), so
keys sort in order.

Part objects are self-describing (bucket layout v2): the name of a part's data object carries its
own manifest,

    part-<part>.r<rows>.s<size>.c<crc32c>.parquet

with <part> the part number (zero-padded to 2 digits), <rows> the row count and <size> the byte
size (decimal, no leading zeros) and <crc32c> the CRC32C of the bytes (8 lowercase hex digits).
`parse_part_version` accepts exactly the names `PartVersion.name` produces and nothing else, so
a temporary file (`.part-...tmp-...`), another layout's name or a hand-edited name is
never mistaken for a part (only layout v2 exists: 0.1.0 shipped no other). Identical content gives an identical name; different content of the
same part gives another name (a *version* of the part) instead of overwriting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPEC = "spec.yaml"
STATE = "state.json"
POLICY = "policy"
STATS = "stats"
COMMITTED = "_COMMITTED"
PART_KINDS = ("rollouts", "verdicts")

_STEP_DIR = re.compile(r"^step-(\d+)$")
_PART_VERSION = re.compile(r"^part-(\d{2,})\.r(\d+)\.s(\d+)\.c([0-9a-f]{8})\.parquet$")
_CRC32C = re.compile(r"^[0-9a-f]{8}$")
_POLICY_DIR = re.compile(r"^v(\d+)$")
_STATS = re.compile(r"^step-(\d+)\.json$")


def _check(n: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{what} must be a non-negative int, got {n!r}")
    return n


@dataclass(frozen=True)
class PartVersion:
    """One complete data object of a part, as named in the step directory."""

    part: int
    rows: int
    size: int
    crc32c: str  # 8 lowercase hex digits

    def __post_init__(self) -> None:
        _check(self.part, "part")
        _check(self.rows, "rows")
        _check(self.size, "size")
        if not isinstance(self.crc32c, str) or not _CRC32C.match(self.crc32c):
            raise ValueError(f"crc32c must be 8 lowercase hex digits, got {self.crc32c!r}")

    @property
    def name(self) -> str:
        return f"part-{self.part:02d}.r{self.rows}.s{self.size}.c{self.crc32c}.parquet"


def step_dir(kind: str, step: int) -> str:
    if kind not in PART_KINDS:
        raise ValueError(f"unknown part kind {kind!r}; expected one of {PART_KINDS}")
    return f"{kind}/step-{_check(step, 'step'):06d}"


def part_key(kind: str, step: int, version: PartVersion) -> str:
    return f"{step_dir(kind, step)}/{version.name}"


def step_commit(kind: str, step: int) -> str:
    return f"{step_dir(kind, step)}/{COMMITTED}"


def parse_part_version(name: str) -> PartVersion | None:
    """The part version named `name`, or None unless `name` is exactly such a name."""
    m = _PART_VERSION.match(name)
    if m is None:
        return None
    version = PartVersion(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4))
    return version if version.name == name else None  # no leading zeros, no other spelling


def parse_step_dir(name: str) -> int | None:
    m = _STEP_DIR.match(name)
    return int(m.group(1)) if m else None


def policy_dir(version: int) -> str:
    return f"{POLICY}/v{_check(version, 'policy version'):06d}"


def policy_commit(version: int) -> str:
    return f"{policy_dir(version)}/{COMMITTED}"


def parse_policy_dir(name: str) -> int | None:
    m = _POLICY_DIR.match(name)
    return int(m.group(1)) if m else None


def stats(step: int) -> str:
    return f"{STATS}/step-{_check(step, 'step'):06d}.json"


def parse_stats(name: str) -> int | None:
    m = _STATS.match(name)
    return int(m.group(1)) if m else None


# -- trainer outputs ---------------------------------------------------------------------------
CHECKPOINTS = "checkpoints"
FINAL = "final"
TIMINGS = "timings"
EVAL = "eval"
_ROLE_TIMING = re.compile(r"^(rollout|verifier)-(\d{2,})\.json$")
_EVAL_RESULT = re.compile(r"^(.+)\.json$")


def checkpoint_dir(step: int) -> str:
    return f"{CHECKPOINTS}/step-{_check(step, 'step'):06d}"


def tree_commit(prefix: str) -> str:
    """The `_COMMITTED` manifest of a file tree (a checkpoint or final/)."""
    return f"{prefix}/{COMMITTED}"


def timings_dir(step: int) -> str:
    return f"{TIMINGS}/step-{_check(step, 'step'):06d}"


def timing(step: int, role: str, index: int) -> str:
    """One rollout or verifier replica's phase times of one step."""
    if role not in ("rollout", "verifier"):
        raise ValueError(f"timings are kept for rollout and verifier replicas, not {role!r}")
    return f"{timings_dir(step)}/{role}-{_check(index, 'replica index'):02d}.json"


def parse_timing(name: str) -> tuple[str, int] | None:
    """(role, index) of a timing object's name, or None."""
    m = _ROLE_TIMING.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def eval_dir(step: int) -> str:
    return f"{EVAL}/step-{_check(step, 'step'):06d}"


def eval_result(step: int, dataset: str) -> str:
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise ValueError(f"dataset name must be a plain file stem, got {dataset!r}")
    return f"{eval_dir(step)}/{dataset}.json"


def parse_eval_result(name: str) -> str | None:
    m = _EVAL_RESULT.match(name)
    return m.group(1) if m and not name.startswith(".") else None
