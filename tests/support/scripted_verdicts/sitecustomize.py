"""Scripted verdicts for a test's local run: the workers are separate processes, so a test cannot
patch them from its own. A test that needs certain verdicts puts this folder on the run's PYTHONPATH
(tests/support/verdicts.py: scripted_run_env); Python then imports this module at the start of every
process of the run. The verifier still judges every sample (its metrics stay real); only the
verdicts it commits are replaced by `alternating`: even samples of every group correct, odd ones
wrong, so every group is learnable whatever the tiny model samples on this CPU's kernels.
"""

from __future__ import annotations

import os

if os.environ.get("OREAL_TEST_VERDICTS") == "alternating":
    from support.verdicts import alternating, decided

    import oreal.workers.verifier as verifier_worker

    judged = verifier_worker.score

    def alternating_score(verifier, samples):
        return [decided(v, alternating(v)) for v in judged(verifier, samples)]

    verifier_worker.score = alternating_score
