"""`oreal run --rollout-python PATH`: run the rollout workers with another Python interpreter.

vLLM's CPU build pins its own transformers, so it lives in a separate virtual environment. The
runner starts the rollout workers with that environment's interpreter (`PATH -m oreal.cli worker
rollout ...`); the other roles keep this interpreter. The other environment must have this package
installed too (`PATH -m pip install --no-deps -e .`). Everything is checked before any worker
starts, so a wrong path fails with one line instead of a crash loop.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

ENV_VAR = "OREAL_ROLLOUT_PYTHON"
CHECK_SECONDS = 120.0  # a cold interpreter on a busy machine imports slowly

# Printed by the probe: the interpreter's oreal version, then whether vllm is importable. Importing
# the rollout worker's module catches the dependencies a `pip install --no-deps` leaves out.
_PROBE = (
    "import importlib.util, oreal, oreal.cli, oreal.workers.rollout; "
    "print(oreal.__version__); "
    "print('yes' if importlib.util.find_spec('vllm') else 'no')"
)


class InterpreterError(ValueError):
    """The rollout interpreter cannot run the rollout worker."""


def resolve(path: str) -> str:
    """An absolute path to an existing executable file (`path` or a name found on PATH)."""
    path = os.path.expanduser(path)
    found = path if os.sep in path else shutil.which(path)
    if found is None or not Path(found).exists():
        raise InterpreterError(f"--rollout-python {path}: no such file")
    if Path(found).is_dir() or not os.access(found, os.X_OK):
        raise InterpreterError(f"--rollout-python {path}: not an executable file")
    # Keep a venv's bin/python symlink as is: resolving it would leave the venv.
    return str(Path(found).absolute())


def check_rollout_python(path: str, engine: str, version: str) -> str:
    """Check that `path` can run this package's rollout worker with `engine`; returns its path.

    It must import `oreal` at `version` (the workers share one bucket protocol) and, for
    `engine: vllm`, find `vllm`. Raises InterpreterError with one line saying what is wrong.
    """
    python = resolve(path)
    try:
        probe = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=CHECK_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(
            f"--rollout-python {python}: did not answer within {CHECK_SECONDS:.0f} s"
        ) from None
    except OSError as err:
        raise InterpreterError(f"--rollout-python {python}: cannot run it: {err.strerror}") from None
    lines = probe.stdout.split()[-2:]
    if probe.returncode != 0 or len(lines) != 2:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'oreal'" in probe.stderr:
            raise InterpreterError(
                f"--rollout-python {python}: cannot import oreal; install this package there "
                f"({python} -m pip install --no-deps -e <this repository>)"
            )
        raise InterpreterError(f"--rollout-python {python}: cannot import the rollout worker: {last}")
    their_version, has_vllm = lines
    if their_version != version:
        raise InterpreterError(
            f"--rollout-python {python}: has oreal {their_version}, this runner is oreal {version}; "
            "install the same version in both environments"
        )
    if engine == "vllm" and has_vllm != "yes":
        raise InterpreterError(
            f"--rollout-python {python}: spec.rollout.engine is vllm but vllm is not installed there"
        )
    return python


def rollout_python(path: str | None, engine: str, version: str, current: str) -> str:
    """The interpreter for the rollout workers: `path`, else $OREAL_ROLLOUT_PYTHON, else `current`.

    Without either, `engine: vllm` needs vllm importable here; the error names the flag.
    """
    chosen = path or os.environ.get(ENV_VAR) or None
    if chosen:
        return check_rollout_python(chosen, engine, version)
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise InterpreterError(
            "spec.rollout.engine is vllm but vllm is not installed in this environment; "
            f"point --rollout-python (or ${ENV_VAR}) at a Python that has vllm and oreal"
        )
    return current
