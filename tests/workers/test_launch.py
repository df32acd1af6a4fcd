"""`oreal worker launch`: torchrun whose exit code is a failed rank's (3 permanent, 1 retriable)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from oreal.workers.launch import exit_code
from oreal.workers.termination import EXIT_ERROR, EXIT_OK, EXIT_PERMANENT

RANKS = """
import os, sys
codes = {int(k): int(v) for k, v in (pair.split(":") for pair in sys.argv[1].split(","))}
sys.exit(codes.get(int(os.environ["RANK"]), 0))
"""


def test_a_permanent_rank_makes_the_whole_launch_permanent():
    fail = lambda code: SimpleNamespace(exitcode=code)  # noqa: E731
    assert exit_code({0: fail(1), 1: fail(3)}) == EXIT_PERMANENT
    assert exit_code({1: fail(1)}) == EXIT_ERROR
    assert exit_code({0: fail(-9)}) == EXIT_ERROR  # killed by a signal: retriable


@pytest.mark.slow
@pytest.mark.parametrize(
    ("codes", "expected"), [("1:3", EXIT_PERMANENT), ("0:1", EXIT_ERROR), ("0:0", EXIT_OK)]
)
def test_torchrun_ranks_exit_codes_reach_the_container(tmp_path, codes, expected):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "oreal.workers", "launch", "--", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run([*argv, str(script), codes], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == expected, proc.stderr[-2000:]
