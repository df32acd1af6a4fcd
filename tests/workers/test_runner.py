"""The local runner's process supervision, progress line, report and eval's pass@k."""

from __future__ import annotations

import os
import sys
import time

import pytest

from oreal.evaluation import pass_at_k
from oreal.runner.html_report import collect_stats, write_report
from oreal.runner.processes import RunFailed, Supervisor, WorkerProcess
from oreal.runner.progress import metrics_line
from oreal.step_outcome import describe_step, step_outcome
from oreal.workers.trainer import step_line


def _worker(tmp_path, name, code):
    return WorkerProcess(name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log")


def _wait(supervisor, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.check()
        if supervisor.all_exited_ok():
            return
        time.sleep(0.05)
    raise AssertionError("workers did not finish")


def test_a_crashing_worker_is_restarted_until_it_succeeds(tmp_path):
    counter = tmp_path / "count"
    code = (
        f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text()) if p.exists() else 0; "
        "p.write_text(str(n+1)); sys.exit(0 if n >= 2 else 1)"
    )
    sup = Supervisor([_worker(tmp_path, "flaky", code)], max_restarts=3)
    sup.start()
    _wait(sup)
    assert sup.restarts == 2 and counter.read_text() == "3"


def test_restarts_are_bounded_by_max_restarts(tmp_path):
    sup = Supervisor([_worker(tmp_path, "broken", "import sys; print('boom'); sys.exit(1)")], max_restarts=1)
    sup.start()
    with pytest.raises(RunFailed, match="failed 2 times") as err:
        _wait(sup)
    assert "boom" in str(err.value)


def test_permanent_errors_are_not_retried(tmp_path):
    sup = Supervisor([_worker(tmp_path, "bad-input", "import sys; sys.exit(3)")], max_restarts=5)
    sup.start()
    with pytest.raises(RunFailed, match="exit 3"):
        _wait(sup)
    assert sup.restarts == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


def test_stop_leaves_no_orphans(tmp_path):
    pidfile = tmp_path / "grandchild"
    code = (
        "import subprocess,sys,time,pathlib; "
        "c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); "
        f"pathlib.Path({str(pidfile)!r}).write_text(str(c.pid)); time.sleep(60)"
    )
    worker = _worker(tmp_path, "sleepy", code)
    sup = Supervisor([worker], max_restarts=0)
    sup.start()
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    sup.stop(grace_seconds=5)
    time.sleep(0.2)
    assert not _alive(worker.pid) and not _alive(grandchild)


def test_metrics_line():
    line = metrics_line(
        {"step": 3, "pass_rate": 0.5, "reward": 0.0, "loss/policy": 0.25, "kl": 0.001, "wall_seconds": 12.0},
        1,
    )
    assert line == "step 3 | pass 0.500 | reward +0.000 | loss 0.2500 | KL 0.0010 | step s 12.0 | restarts 1"
    assert "waiting" in metrics_line(None)


def test_steps_without_a_policy_update_say_why_instead_of_a_loss():
    warmup = {"step": 0, "pass_rate": 0.031, "warmup": 1.0, "rm/loss": 0.6931}
    assert metrics_line(warmup) == "step 0 | pass 0.031 | reward-model warm-up, policy frozen, RM loss 0.693"
    empty = {"step": 3, "pass_rate": 0.0, "warmup": 0.0, "skipped": 1.0}
    line = metrics_line(empty)
    assert line == "step 3 | pass 0.000 | no prompt had both a correct and a wrong answer; nothing to learn"
    assert step_outcome(warmup) == "warmup" and step_outcome(empty) == "no_learnable_group"
    # a warm-up step with no learnable group trained nothing at all, the reward model included
    assert step_outcome({"warmup": 1.0, "skipped": 1.0}) == "no_learnable_group"
    trained = {"step": 4, "warmup": 0.0, "loss/policy": 0.25}
    assert step_outcome(trained) == "trained" and describe_step(trained) == ""
    assert step_line(warmup | {"time/train": 1.25}) == (
        "pass rate 0.031, reward-model warm-up, policy frozen, RM loss 0.693, train 1.2s"
    )
    assert step_line(trained) == "loss 0.2500"


def test_report_has_plots_and_a_table(tmp_path):
    from oreal.bucket import Bucket

    bucket = Bucket.open((tmp_path / "b").as_uri())
    for step in range(3):
        bucket.write_stats(step, {"pass_rate": 0.1 * step, "loss/policy": 1.0 - step, "kl": 0.0})
    rows = collect_stats(bucket)
    assert [r["step"] for r in rows] == [0, 1, 2]
    page = write_report("demo", rows, tmp_path / "out", {"bucket": bucket.uri})
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    assert "<td>0.2</td>" in page.read_text()


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(1, 1, 1, 1.0), (1, 0, 1, 0.0), (4, 1, 1, 0.25), (4, 1, 2, 0.5), (5, 2, 3, 0.9), (3, 0, 3, 0.0)],
)
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_terminal_display_shows_a_bar_per_step_and_the_metrics_line():
    import io

    from rich.console import Console

    from oreal.runner.progress import Display, StepProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with Display(total_steps=3, rollout_parts=2, verdict_parts=1, console=console) as display:
        display.update(
            {0: StepProgress(2, 1, True), 1: StepProgress(1, 0, False)},
            {0: {"step": 0, "pass_rate": 0.25}},
            0,
        )
    text = buffer.getvalue()
    assert "step 1/3" in text and "step 2/3" in text
    assert "4/4" in text and "1/4" in text  # rollout parts + verdict parts + trained
    assert "pass 0.250" in text


def test_status_json_has_no_loss_for_a_step_without_a_policy_update(tmp_path):
    from oreal.runner.status import run_status

    empty = {
        "pass_rate": 0.0,
        "reward": -1.0,
        "skipped": 1.0,
        "wall_seconds": 2.5,
        "loss/policy": float("nan"),
    }
    status = run_status(
        "Running", "Started", "", step=3, total_steps=5, restarts=0, start_time="t", stats=empty
    )
    dumped = status.model_dump(by_alias=True, exclude_none=True)
    assert dumped["lastMetrics"] == {"passRate": 0.0, "reward": -1.0, "stepSeconds": 2.5}  # no NaN, no loss
    assert "NaN" not in status.model_dump_json()
