"""RunState: the small `state.json` summary of a run's progress, written by the trainer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any


@dataclass
class RunState:
    """Progress of a run.

    step: last step whose training update is committed (-1: none yet).
    policy_version: latest committed policy version (0: the initial policy).
    done: the run finished all its steps.
    message: free text for humans (e.g. why a run stopped).
    updated_at: ISO-8601 UTC time of the write (set by `Bucket.write_state`).
    """

    step: int = -1
    policy_version: int = 0
    done: bool = False
    message: str = ""
    updated_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunState:
        obj: dict[str, Any] = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})  # newer fields are ignored

    def stamped(self) -> RunState:
        return RunState(**{**asdict(self), "updated_at": datetime.now(UTC).isoformat(timespec="seconds")})
