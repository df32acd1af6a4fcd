"""Optional LLM judge, as in OREAL: a second opinion when the rules say "not equal".

The judge is an OpenAI-compatible chat endpoint (vLLM or `lmdeploy serve`). It can only turn a
rule negative into a positive; any timeout, HTTP error or unparseable reply counts as negative.
Only the standard library is used (urllib), so the verifier has no HTTP client dependency.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

PROMPT = """You are grading the final answer of a math problem.
Compare the candidate's final answer with the reference answer. They are equivalent if they denote \
the same mathematical object (same value, same set, same interval, same expression), even when \
written differently. Ignore the reasoning; judge only the final answer.

Reference answer: {gold}
Candidate's final answer: {answer}

Reply with a single letter: A if the candidate's answer is equivalent to the reference answer \
(CORRECT), or B if it is not (INCORRECT)."""

_VERDICT_WORDS = re.compile(r"\b(INCORRECT|NOT\s+CORRECT|CORRECT|NOT\s+EQUIVALENT|EQUIVALENT|A|B)\b")


@dataclass(frozen=True)
class JudgeConfig:
    endpoint: str  # e.g. http://judge:8000/v1 (".../chat/completions" is appended)
    model: str
    timeout_seconds: float = 30.0
    api_key: str | None = None
    max_tokens: int = 512


def parse_verdict(reply: str) -> bool | None:
    """True for A/CORRECT, False for B/INCORRECT, None if the reply says neither.

    A reasoning judge may think aloud first, so the last verdict word after any </think> wins.
    """
    text = reply.rsplit("</think>", 1)[-1].upper()
    text = re.sub(r"\\(?:BOXED|TEXT|TEXTBF)\{([^{}]*)\}", r" \1 ", text)
    words = _VERDICT_WORDS.findall(text)
    if not words:
        return None
    last = words[-1]
    return last in ("A", "CORRECT", "EQUIVALENT")


def chat_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


def ask_judge(config: JudgeConfig, gold: str, answer: str) -> bool:
    """Ask the judge; True only for an explicit "equivalent" verdict."""
    body = {
        "model": config.model,
        "messages": [{"role": "user", "content": PROMPT.format(gold=gold, answer=answer[:4000])}],
        "temperature": 0.0,
        "max_tokens": config.max_tokens,
    }
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(
        chat_url(config.endpoint), data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_seconds) as response:
            payload = json.loads(response.read(1 << 20))
        reply = payload["choices"][0]["message"]["content"] or ""
    except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError) as err:
        log.warning("judge request failed: %s", err)
        return False
    return parse_verdict(str(reply)) is True
