"""Find the final answer in a full model response.

Order of preference (the last occurrence of each wins):
1. the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces) or ``\\boxed 5``;
2. the last "final answer is ...", "the answer is ...", "Answer: ...".
Only the text after ``</think>`` counts when the response has one; a response that opened
``<think>`` and never closed it has no answer. Everything here is linear in the input length:
``str.rfind`` and brace scanning only, no backtracking regular expressions on model text.
"""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_PHRASES = ("final answer is", "the answer is", "answer:")
# Characters trimmed from the end of a phrase answer ("The answer is $5$.").
_TRAIL = " \t\n.;:,!"


def final_section(response: str) -> str | None:
    """The part of the response that may hold the answer; None if thinking never ended."""
    end = response.rfind("</think>")
    if end >= 0:
        return response[end + len("</think>") :]
    if "<think>" in response:
        return None
    return response


def _braced(text: str, start: int, stop: int) -> tuple[str, int] | None:
    """The content of the brace group opening at text[start] == '{' and closing before stop."""
    depth = 0
    for pos in range(start, stop):
        char = text[pos]
        if char == "\\":
            continue
        if char == "{" and (pos == 0 or text[pos - 1] != "\\"):
            depth += 1
        elif char == "}" and text[pos - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1 : pos], pos + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} or \\fbox{...} in text."""
    starts = [(m.start(), m.end()) for m in _BOX_RE.finditer(text)]
    # A group that never closes cannot contain the closing brace of an earlier group either, so
    # earlier candidates are scanned only up to the last failed one: linear time overall.
    stop = len(text)
    for begin, pos in reversed(starts):
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            group = _braced(text, pos, stop)
            if group is not None:
                return group[0].strip()
            stop = begin
        elif pos > begin and text[pos - 1] == " " and pos < len(text):
            # "\\boxed 5": the argument runs to the next space or dollar sign.
            match = re.match(r"[^\s$]+", text[pos : pos + 200])
            if match:
                return match.group(0).rstrip(_TRAIL)
    return None


def _after_phrase(text: str) -> str | None:
    lower = text.lower()
    best, phrase = -1, ""
    for candidate in _PHRASES:
        pos = lower.rfind(candidate)
        if pos > best:
            best, phrase = pos, candidate
    if best < 0:
        return None
    rest = text[best + len(phrase) :]
    rest = rest.lstrip(" \t:*")  # "The answer is: **5**"
    line = rest.split("\n", 1)[0][:2000]
    # Stop at the end of the sentence (a period followed by a space), not at a decimal point.
    sentence = re.split(r"\.\s", line, maxsplit=1)[0]
    answer = sentence.strip().strip("*").rstrip(_TRAIL).strip()
    if answer.startswith("$") and answer.count("$") >= 2:
        answer = answer[1 : answer.index("$", 1)]
    answer = answer.strip("$ ").rstrip(_TRAIL)
    return answer or None


def extract_answer(response: str) -> str | None:
    """The final answer in a model response, or None if it has none."""
    section = final_section(response)
    if section is None:
        return None
    boxed = last_boxed(section)
    if boxed is not None:
        return boxed or None
    return _after_phrase(section)


def gold_answer(gold: str) -> str:
    """Reference answers are used as given, except that a boxed reference is unboxed."""
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = last_boxed(gold)
        if boxed:
            return boxed
    return gold.strip()
