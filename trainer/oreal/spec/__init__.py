"""The OREALRun spec: typed models, YAML loading with clear errors, and CRD generation."""

from oreal.spec.loader import SpecError, load_run, parse_run, run_from_dict
from oreal.spec.models import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    AlgorithmSpec,
    OREALRun,
    OREALRunSpec,
    OREALRunStatus,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "PLURAL",
    "AlgorithmSpec",
    "OREALRun",
    "OREALRunSpec",
    "OREALRunStatus",
    "SpecError",
    "load_run",
    "parse_run",
    "run_from_dict",
]
