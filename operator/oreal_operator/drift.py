"""Whether a live object still holds what the operator rendered (pure).

The API server, the JobSet webhook and Kueue add to what the operator writes: defaults (a
container's terminationMessagePath, a replicatedJob's groupName), and at admission Kueue adds
node selectors, tolerations, labels and scheduling gates to the pod templates. None of that is
drift. So `covers(desired, live)` holds when every field the operator rendered is in the live
object with the same value:

- mappings: each rendered key is present and covered (extra live keys are fine);
- lists: the live list starts with the rendered items, each covered (Kueue appends tolerations;
  a removed, reordered or changed item is drift);
- anything else: equal.

`drifted(desired, live)` lists the paths that are not covered, for the message of a restore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def drifted(desired: Any, live: Any, path: str = "", limit: int = 5) -> list[str]:
    """Up to `limit` paths (`spec.replicatedJobs[2].template...`) where `live` does not cover `desired`."""
    out: list[str] = []
    _walk(desired, live, path, out, limit)
    return out


def covers(desired: Any, live: Any) -> bool:
    return not drifted(desired, live, limit=1)


def _walk(desired: Any, live: Any, path: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            out.append(path or "<root>")
            return
        for key, value in desired.items():
            _walk(value, live.get(key), f"{path}.{key}" if path else str(key), out, limit)
        return
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(live, Sequence) or isinstance(live, str) or len(live) < len(desired):
            out.append(path)
            return
        for i, item in enumerate(desired):
            _walk(item, live[i], f"{path}[{i}]", out, limit)
        return
    if desired != live or type(desired) is bool and type(live) is not bool:
        out.append(path)
