"""The operator's own errors: what makes a spec SpecInvalid, and a child name held by someone else."""

from __future__ import annotations


class RenderError(ValueError):
    """The spec is valid but cannot run on Kubernetes; the message names the field."""


class ForeignObjectError(RuntimeError):
    """A child's name is taken by an object this run does not control."""


class ApiNotServed(RuntimeError):
    """The cluster does not serve a kind the operator creates (e.g. the JobSet CRD is not installed)."""
