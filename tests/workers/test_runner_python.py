"""`oreal run --rollout-python`: the up-front checks and the command lines the runner builds.

The fake interpreters are shell scripts that answer the probe the way a Python would; no vLLM
is needed.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from oreal import __version__
from oreal.runner import interpreter
from oreal.runner.interpreter import InterpreterError, check_rollout_python, rollout_python
from oreal.runner.local import EXIT_BAD_INTERPRETER, build_workers, prepare_run, run_local
from workers.conftest import tiny_spec, write_spec


def _fake_python(path: Path, stdout: str = "", stderr: str = "", code: int = 0) -> Path:
    """An executable that prints `stdout`/`stderr` and exits `code`, whatever it is asked."""
    path.write_text(f"#!/bin/sh\nprintf '{stdout}'\nprintf '{stderr}' >&2\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_missing_interpreter_is_refused(tmp_path):
    with pytest.raises(InterpreterError, match="no such file"):
        check_rollout_python(str(tmp_path / "nope" / "python"), "hf", __version__)
    with pytest.raises(InterpreterError, match="no such file"):
        check_rollout_python("no-such-python-anywhere", "hf", __version__)


def test_a_file_that_is_not_executable_is_refused(tmp_path):
    plain = tmp_path / "python"
    plain.write_text("not a program")
    with pytest.raises(InterpreterError, match="not an executable"):
        check_rollout_python(str(plain), "hf", __version__)
    with pytest.raises(InterpreterError, match="not an executable"):
        check_rollout_python(str(tmp_path), "hf", __version__)


def test_an_interpreter_without_oreal_gets_the_install_hint(tmp_path):
    fake = _fake_python(
        tmp_path / "python", stderr="ModuleNotFoundError: No module named \\047oreal\\047\\n", code=1
    )
    with pytest.raises(InterpreterError, match="cannot import oreal; install this package there"):
        check_rollout_python(str(fake), "hf", __version__)


def test_a_missing_dependency_of_the_worker_is_named(tmp_path):
    fake = _fake_python(
        tmp_path / "python",
        stderr="Traceback\\nModuleNotFoundError: No module named \\047pyarrow\\047\\n",
        code=1,
    )
    with pytest.raises(InterpreterError, match="cannot import the rollout worker: .*pyarrow"):
        check_rollout_python(str(fake), "hf", __version__)


def test_vllm_engine_needs_vllm_in_that_interpreter(tmp_path):
    without = _fake_python(tmp_path / "python", stdout=f"{__version__}\\nno\\n")
    assert check_rollout_python(str(without), "hf", __version__) == str(without)
    with pytest.raises(InterpreterError, match="engine is vllm but vllm is not installed there"):
        check_rollout_python(str(without), "vllm", __version__)
    with_vllm = _fake_python(tmp_path / "python-vllm", stdout=f"{__version__}\\nyes\\n")
    assert check_rollout_python(str(with_vllm), "vllm", __version__) == str(with_vllm)


def test_another_oreal_version_is_refused(tmp_path):
    fake = _fake_python(tmp_path / "python", stdout="0.0.1\\nyes\\n")
    with pytest.raises(InterpreterError, match="has oreal 0.0.1, this runner is oreal"):
        check_rollout_python(str(fake), "hf", "9.9.9")


def test_this_python_passes_the_real_probe():
    assert check_rollout_python(sys.executable, "hf", __version__) == sys.executable


def test_the_env_var_is_the_default_and_the_flag_wins(tmp_path, monkeypatch):
    from_env = _fake_python(tmp_path / "env-python", stdout=f"{__version__}\\nyes\\n")
    from_flag = _fake_python(tmp_path / "flag-python", stdout=f"{__version__}\\nyes\\n")
    monkeypatch.setenv(interpreter.ENV_VAR, str(from_env))
    assert rollout_python(None, "vllm", __version__, sys.executable) == str(from_env)
    assert rollout_python(str(from_flag), "vllm", __version__, sys.executable) == str(from_flag)
    monkeypatch.delenv(interpreter.ENV_VAR)
    assert rollout_python(None, "hf", __version__, sys.executable) == sys.executable


def test_vllm_without_a_rollout_python_names_the_flag(monkeypatch):
    monkeypatch.delenv(interpreter.ENV_VAR, raising=False)
    monkeypatch.setattr(interpreter.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InterpreterError, match="--rollout-python"):
        rollout_python(None, "vllm", __version__, sys.executable)


def test_only_the_rollout_workers_use_the_other_interpreter(tmp_path, tiny_model, prompts_file):
    spec = write_spec(tmp_path / "run.yaml", tiny_spec(tiny_model, prompts_file, **{"rollout.replicas": 2}))
    lr, _ = prepare_run(str(spec), bucket_uri=(tmp_path / "bucket").as_uri())
    other = "/opt/vllm-venv/bin/python"
    workers = build_workers(lr, threads=2, metrics_port=0, rollout_python=other)
    commands = {w.name: w.argv for w in workers}
    assert set(commands) == {"rollout-0", "rollout-1", "verifier-0", "trainer"}
    for i in range(2):
        assert commands[f"rollout-{i}"] == [
            other,
            "-m",
            "oreal.cli",
            "worker",
            "rollout",
            "--run",
            lr.uri,
            "--index",
            str(i),
            "--replicas",
            "2",
        ]
    assert commands["verifier-0"][:5] == [sys.executable, "-m", "oreal.cli", "worker", "verifier"]
    assert commands["trainer"][:5] == [sys.executable, "-m", "oreal.cli", "worker", "trainer"]
    default = build_workers(lr, threads=2, metrics_port=0)
    assert {w.argv[0] for w in default} == {sys.executable}


def test_a_bad_rollout_python_starts_nothing(tmp_path, tiny_model, prompts_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tiny_model, prompts_file, **{"rollout.engine": "vllm"})
    spec["spec"]["storage"] = {"uri": (tmp_path / "bucket").as_uri()}
    path = write_spec(tmp_path / "run.yaml", spec)
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    code = run_local(str(path), threads=1, rollout_python_path=missing)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INTERPRETER
    assert err == [f"error: --rollout-python {missing}: no such file"]
    assert not (tmp_path / "bucket" / "logs").exists()  # no worker was started
    assert os.listdir(tmp_path / "bucket") == ["spec.yaml"]
