"""Math answer verifier: the binary outcome reward of OREAL (arXiv 2502.06781).

    from oreal.verifier import Verifier, Judgement

    with Verifier(timeout_seconds=5.0) as verifier:
        judgement = verifier.verify(gold="\\frac{1}{2}", response="... so the answer is $\\boxed{0.5}$.")
        judgement.correct, judgement.status  # (True, "correct")

Module map: extract (final answer), normalize (strings), latex (safe parser), structure (sets,
intervals, tuples, ...), algebra + values (exact and numeric arithmetic), budget (time budget of
the in-process rules), rules (the cascade), symbolic (sympy, workers only), worker + pool (killable
processes), judge (optional LLM), metrics (Prometheus), verifier (the API), cli (`oreal verify`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .judge import JudgeConfig
    from .verifier import STATUSES, Judgement, Verifier

__all__ = ["STATUSES", "JudgeConfig", "Judgement", "Verifier"]


def __getattr__(name: str) -> Any:
    """Import lazily, so that `oreal --help` (which imports oreal.verifier.cli) stays fast."""
    if name == "JudgeConfig":
        from .judge import JudgeConfig

        return JudgeConfig
    if name in ("STATUSES", "Judgement", "Verifier"):
        from . import verifier

        return getattr(verifier, name)
    raise AttributeError(f"module 'oreal.verifier' has no attribute {name!r}")
