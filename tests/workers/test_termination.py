"""Workers exit with documented codes and write why to the termination log the kubelet reads."""

from __future__ import annotations

import pytest

from oreal.bucket import BucketError, LayoutVersionError, SchemaVersionError
from oreal.workers import termination
from oreal.workers.lifecycle import Stopped, WorkerError, run_worker
from oreal.workers.termination import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PERMANENT


@pytest.fixture
def log_file(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    monkeypatch.setenv(termination.TERMINATION_LOG_ENV, str(path))
    return path


def fail(err: BaseException):
    def body() -> int:
        raise err

    return body


def test_the_codes_are_the_documented_ones() -> None:
    assert (EXIT_OK, EXIT_ERROR, EXIT_PERMANENT, EXIT_INTERRUPTED) == (0, 1, 3, 130)
    for code in ("0", "1", "3", "130"):
        assert f"    {code} " in termination.__doc__


def test_a_permanent_failure_exits_3_and_writes_its_reason(log_file) -> None:
    message = "s3://b/r: it already holds run 'other' with a different spec (algorithm.steps changed)"
    assert run_worker("init", fail(WorkerError(message))) == EXIT_PERMANENT
    assert log_file.read_text() == message


def test_a_bucket_failure_is_retriable_and_says_why(log_file) -> None:
    assert (
        run_worker("trainer", fail(BucketError("s3://b/r: connection refused\n(after 5 tries)")))
        == EXIT_ERROR
    )
    assert log_file.read_text() == "s3://b/r: connection refused (after 5 tries)"  # one line


def test_a_bucket_written_by_another_oreal_is_permanent(log_file) -> None:
    for error in (
        LayoutVersionError("s3://b/r: manifest v3 was written by a newer oreal"),
        SchemaVersionError("x"),
    ):
        assert run_worker("trainer", fail(error)) == EXIT_PERMANENT
    assert log_file.read_text() == "x"  # the last one's reason


def test_success_and_a_stop_write_nothing(log_file) -> None:
    assert run_worker("rollout", lambda: 0) == EXIT_OK
    assert run_worker("rollout", fail(Stopped("SIGTERM"))) == EXIT_INTERRUPTED
    assert not log_file.exists()


def test_the_message_is_cut_to_what_the_kubelet_keeps(log_file) -> None:
    assert termination.write("é" * 5000)
    data = log_file.read_bytes()
    assert len(data) <= termination.MAX_BYTES and data.decode("utf-8") == "é" * (len(data) // 2)


def test_outside_a_pod_there_is_no_log_and_no_error(monkeypatch) -> None:
    monkeypatch.delenv(termination.TERMINATION_LOG_ENV, raising=False)
    if termination.path() == termination.DEFAULT_TERMINATION_LOG and not __import__("os").path.exists(
        termination.DEFAULT_TERMINATION_LOG
    ):
        assert termination.write("nothing to see") is False


def serve(seconds: float) -> str:
    """/metrics on a free port, held `seconds` (spec.metrics.finalScrapeSeconds) after success."""
    from support.seaweedfs import free_ports

    from oreal import metrics

    (port,) = free_ports(1)
    metrics.serve_metrics(port, role="trainer", final_scrape_seconds=seconds)
    return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def stop_servers():
    from oreal import metrics

    yield
    metrics.stop_metrics()


def test_a_finished_worker_serves_metrics_for_the_final_scrape(stop_servers, log_file, capsys) -> None:
    import threading
    import time
    import urllib.request

    url = serve(1.0)
    scraped: list[int] = []

    def scrape_during_hold() -> None:
        time.sleep(0.5)  # the body has returned by now
        with urllib.request.urlopen(url, timeout=5) as response:
            scraped.append(response.status)

    scraper = threading.Thread(target=scrape_during_hold)
    started = time.monotonic()
    scraper.start()
    assert run_worker("trainer", lambda: 0) == EXIT_OK
    scraper.join()
    assert time.monotonic() - started >= 1.0 and scraped == [200]
    assert "final scrape" in capsys.readouterr().err


def test_a_failed_worker_does_not_wait_for_a_final_scrape(stop_servers, log_file, capsys) -> None:
    serve(60.0)
    assert run_worker("trainer", fail(BucketError("down"))) == EXIT_ERROR
    assert run_worker("trainer", lambda: EXIT_PERMANENT) == EXIT_PERMANENT
    log = capsys.readouterr().err
    assert "down" in log and "final scrape" not in log


def test_a_stop_during_the_final_scrape_is_a_success(stop_servers, log_file) -> None:
    import os
    import signal
    import threading
    import time

    serve(60.0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    assert run_worker("trainer", lambda: 0) == EXIT_OK  # the work was done: not "interrupted"
    assert time.monotonic() - started < 30  # SIGTERM ended the 60 s hold
