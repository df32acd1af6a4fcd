"""Helpers shared by the verifier tests."""

from __future__ import annotations


def boxed(answer: str) -> str:
    """A plausible model response whose final answer is `answer`."""
    return f"Let me work through this carefully.\n\nSo the final result is $\\boxed{{{answer}}}$."
