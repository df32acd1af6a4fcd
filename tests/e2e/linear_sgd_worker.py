"""`python -m oreal.workers ...` with LinearSGD in place of AdamW (tests/support/numerics.py).

torchrun starts this file on every rank of tests/e2e/test_distributed_trainer.py, so that the
single-process and the two-rank trainer can be compared within fp32 rounding.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from support.numerics import use_linear_sgd  # noqa: E402

from oreal.workers.__main__ import main  # noqa: E402

if __name__ == "__main__":
    use_linear_sgd()
    sys.exit(main(sys.argv[1:]))
