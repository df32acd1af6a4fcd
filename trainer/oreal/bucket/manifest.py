"""Manifests: the small JSON objects that make data visible (written last, trusted first).

- `PartManifest` (part-NN.manifest.json): one part's row count, byte size and sha256.
- `StepManifest` (step-NNNNNN/_COMMITTED): every part of a step, copied from the part manifests.
- `PolicyManifest` (policy/vNNNNNN/_COMMITTED): every file of a policy folder with size and CRC-32.

Parts use sha256 (a few MB per step). Policy files use CRC-32 (zlib, ~2.5 GB/s vs ~1 GB/s for
sha256 here): a 7B checkpoint is ~15 GB and every rollout pod verifies every version it loads,
so sha256 would add ~15 s per pass. CRC-32 is what S3 itself offers for transfer integrity and
detects truncation and accidental corruption, which is what these checks are for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from oreal.bucket.crc import file_crc32
from oreal.bucket.errors import BucketError

__all__ = ["PartManifest", "PolicyFile", "PolicyManifest", "StepManifest", "file_crc32", "sha256"]

MANIFEST_VERSION = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BucketError(f"{where}: manifest is not valid JSON") from exc
    if not isinstance(obj, dict) or obj.get("manifest_version", 0) > MANIFEST_VERSION:
        raise BucketError(f"{where}: unsupported manifest (written by a newer oreal?)")
    return obj


def _dump(obj: Any) -> bytes:
    return json.dumps({"manifest_version": MANIFEST_VERSION, **asdict(obj)}, indent=1).encode()


@dataclass(frozen=True)
class PartManifest:
    part: int
    rows: int
    size: int
    sha256: str

    def to_bytes(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> PartManifest:
        obj = _load(data, where)
        try:
            return cls(
                part=int(obj["part"]), rows=int(obj["rows"]), size=int(obj["size"]), sha256=obj["sha256"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BucketError(f"{where}: malformed part manifest") from exc


@dataclass(frozen=True)
class StepManifest:
    kind: str
    step: int
    parts: list[PartManifest] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def part(self, part: int) -> PartManifest | None:
        return next((p for p in self.parts if p.part == part), None)

    def to_bytes(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> StepManifest:
        obj = _load(data, where)
        try:
            parts = [
                PartManifest(**{k: p[k] for k in ("part", "rows", "size", "sha256")}) for p in obj["parts"]
            ]
            return cls(kind=obj["kind"], step=int(obj["step"]), parts=parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise BucketError(f"{where}: malformed step manifest") from exc


@dataclass(frozen=True)
class PolicyFile:
    path: str  # relative, '/'-separated
    size: int
    crc32: str  # 8 hex digits, see file_crc32


@dataclass(frozen=True)
class PolicyManifest:
    version: int
    files: list[PolicyFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> PolicyManifest:
        obj = _load(data, where)
        try:
            files = [PolicyFile(path=f["path"], size=int(f["size"]), crc32=f["crc32"]) for f in obj["files"]]
            return cls(version=int(obj["version"]), files=files)
        except (KeyError, TypeError, ValueError) as exc:
            raise BucketError(f"{where}: malformed policy manifest") from exc
