"""Deterministic keys of the run bucket (see DESIGN.md, "The bucket is the log").

```
spec.yaml
policy/v000000/...                      policy/v000000/_COMMITTED
rollouts/step-000000/part-00.r256.s901234.c1a2b3c4d.parquet    (one object per part version)
rollouts/step-000000/_COMMITTED
verdicts/step-000000/...                (same shape as rollouts)
stats/step-000000.json
state.json
```
Steps and versions are zero-padded to 6 digits and parts to 2 (wider numbers simply grow), so
keys sort in order.

Part objects are self-describing (bucket layout v2): the name of a part's data object carries its
own manifest,

    part-<part>.r<rows>.s<size>.c<crc32c>.parquet

with <part> the part number (zero-padded to 2 digits), <rows> the row count and <size> the byte
size (decimal, no leading zeros) and <crc32c> the CRC32C of the bytes (8 lowercase hex digits).
`parse_part_version` accepts exactly the names `PartVersion.name` produces and nothing else, so
a temporary file (`.part-...tmp-...`), a v1 name (`part-00.parquet`) or a hand-edited name is
never mistaken for a part. Identical content gives an identical name; different content of the
same part gives another name (a *version* of the part) instead of overwriting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPEC = "spec.yaml"
STATE = "state.json"
COMMITTED = "_COMMITTED"
PART_KINDS = ("rollouts", "verdicts")

_STEP_DIR = re.compile(r"^step-(\d+)$")
_PART_VERSION = re.compile(r"^part-(\d{2,})\.r(\d+)\.s(\d+)\.c([0-9a-f]{8})\.parquet$")
_V1_PART = re.compile(r"^part-\d+\.(parquet|manifest\.json)$")
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


def is_v1_part_name(name: str) -> bool:
    """A part object of the v1 layout (`part-NN.parquet`, `part-NN.manifest.json`)."""
    return _V1_PART.match(name) is not None


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
