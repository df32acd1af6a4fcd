"""Children as the operator keeps them between rounds: the bulk of a JobSet's spec compressed.

A rendered JobSet is ~14 kB of JSON but ~60 kB as Python objects, and the controller keeps two per
run (the live one and the rendering): at 1,000 runs that alone would be 120 MB. Its replicatedJobs
are read only to create the JobSet or to compare a changed live one with the rendering, so they
are kept packed (`Packed`: zlib-compressed JSON, ~2 kB) and unpacked for those moments;
metadata, spec.suspend, the policies and the status stay plain objects.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

PACKED_KEYS = ("replicatedJobs",)


class Packed(bytes):
    """A spec field kept as its compressed JSON text (equal values pack to equal bytes)."""


def pack(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` (copied shallowly) with the bulky spec fields packed; other kinds unchanged."""
    out = dict(obj)
    spec = out.get("spec")
    if isinstance(spec, Mapping) and any(isinstance(spec.get(k), list) for k in PACKED_KEYS):
        out["spec"] = {
            k: Packed(zlib.compress(json.dumps(v, separators=(",", ":")).encode(), 1))
            if k in PACKED_KEYS and isinstance(v, list)
            else v
            for k, v in spec.items()
        }
    return out


def unpack(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` (copied shallowly) with packed fields as objects again."""
    out = dict(obj)
    spec = out.get("spec")
    if isinstance(spec, Mapping) and any(isinstance(v, Packed) for v in spec.values()):
        out["spec"] = {
            k: json.loads(zlib.decompress(v)) if isinstance(v, Packed) else v for k, v in spec.items()
        }
    return out
