"""The optional LLM judge, against a tiny OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from verifier_helpers import boxed

from oreal.verifier import JudgeConfig, Verifier
from oreal.verifier.judge import chat_url, parse_verdict


class FakeJudge:
    """Answers every chat completion with `reply` (after `delay` seconds, or with HTTP `status`)."""

    def __init__(self) -> None:
        self.reply, self.delay, self.status = "A", 0.0, 200
        self.requests: list[dict] = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                judge.requests.append({"path": self.path, "body": body})
                time.sleep(judge.delay)
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": judge.reply}}]}
                )
                self.send_response(judge.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_judge():
    judge = FakeJudge()
    yield judge
    judge.close()


@pytest.fixture
def judged(fake_judge):
    config = JudgeConfig(endpoint=fake_judge.endpoint, model="judge", timeout_seconds=0.5)
    with Verifier(workers=1, judge=config) as verifier:
        yield verifier


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A", True),
        ("B", False),
        ("CORRECT", True),
        ("INCORRECT", False),
        ("The answers match. Final verdict: A", True),
        ("<think>Maybe A... no, they differ.</think>B", False),
        ("\\boxed{A}", True),
        ("Judgement: incorrect.", False),
        ("This is NOT CORRECT", False),
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_parse_verdict(reply: str, expected: bool | None) -> None:
    assert parse_verdict(reply) is expected


def test_chat_url() -> None:
    assert chat_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_judge_turns_a_rule_negative_into_a_positive(fake_judge, judged) -> None:
    fake_judge.reply = "A"
    verdict = judged.verify("\\text{the square}", boxed("\\text{a square}"))
    assert (verdict.correct, verdict.status) == (True, "correct")
    (request,) = fake_judge.requests
    assert request["path"] == "/v1/chat/completions"
    prompt = request["body"]["messages"][0]["content"]
    assert "the square" in prompt and "a square" in prompt


def test_judge_negative_stays_negative(fake_judge, judged) -> None:
    fake_judge.reply = "INCORRECT"
    assert judged.verify("5", boxed("6")).status == "incorrect"


def test_judge_is_not_asked_about_rule_positives_or_missing_answers(fake_judge, judged) -> None:
    assert judged.verify("5", boxed("5")).correct
    assert judged.verify("5", "no answer").status == "no_answer"
    assert judged.verify("5", boxed("6"), truncated=True).status == "no_answer"
    assert fake_judge.requests == []


@pytest.mark.parametrize(("delay", "status"), [(2.0, 200), (0.0, 500)])
def test_judge_timeouts_and_errors_are_negative(fake_judge, judged, delay: float, status: int) -> None:
    fake_judge.reply, fake_judge.delay, fake_judge.status = "A", delay, status
    start = time.perf_counter()
    verdict = judged.verify("5", boxed("6"))
    assert (verdict.correct, verdict.status) == (False, "incorrect")
    assert time.perf_counter() - start < 1.5


def test_unreachable_judge_is_negative() -> None:
    config = JudgeConfig(endpoint="http://127.0.0.1:9/v1", model="judge", timeout_seconds=0.5)
    with Verifier(workers=1, judge=config) as verifier:
        assert not verifier.verify("5", boxed("6")).correct


def test_judge_in_batches(fake_judge, judged) -> None:
    fake_judge.reply = "B"
    verdicts = judged.verify_batch(
        [("5", boxed("6"), False), ("5", boxed("5"), False), ("7", boxed("8"), False)]
    )
    assert [v.correct for v in verdicts] == [False, True, False]
    assert len(fake_judge.requests) == 2
