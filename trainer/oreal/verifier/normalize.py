"""String normalisation of an answer before parsing.

This removes what never changes the value: delimiters, spacing commands, ``\\left``/``\\right``,
``\\dfrac``, degree signs, dollar signs, thousands separators, units written as trailing words,
``\\text{}`` wrappers. Percent signs are removed but reported, because "25%" may be compared
either as 25 or as 0.25. Every pattern here is linear: no nested quantifiers on model text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ANSWER_CHARS = 100_000

_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|textnormal|boldsymbol)\s*\{([^{}]*)\}"
)
_SIZE_COMMANDS = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])")
_SPACES = re.compile(
    r"(?<!\\)\\[,;:! ]|\\q?quad(?![a-zA-Z])|~|\\displaystyle(?![a-zA-Z])|\\limits(?![a-zA-Z])"
)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z])")
_THOUSANDS_MARKED = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*|,\s*\\!\s*)(?=\d{3})")
_PLAIN_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_UNIT_TOKEN = re.compile(r"[a-zA-Z]{2,}\.?(?:\^\{?\d\}?)?|\^\{?\d\}?")
_KEEP_WORDS = {"pi", "sqrt", "frac", "infty", "inf"}
_CONJUNCTIONS = re.compile(r",?\s+(?:and|or)\s+")
_MEMBERSHIP = re.compile(r"^[a-zA-Z]\s*\\in\s*|^\\approx\s*|^≈\s*")
_EMPTY_SET = re.compile(r"\\varnothing|\\emptyset|\\\{\s*\\\}|\{\s*\}")


@dataclass(frozen=True)
class Normalized:
    text: str
    percent: bool = False
    degrees: bool = False
    textual: bool = False  # the answer was written as words in \text{...}


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def _is_words(content: str) -> bool:
    return bool(re.fullmatch(r"\s*[A-Za-z][A-Za-z' -]*[A-Za-z]\s*", content))


def _strip_units(s: str) -> str:
    """Drop trailing unit words ("864 inches^2", "5.4 cents") after a number or a closing group."""
    parts = s.split(" ")
    keep = len(parts)
    while keep > 1 and _UNIT_TOKEN.fullmatch(parts[keep - 1]) and parts[keep - 1].lower() not in _KEEP_WORDS:
        keep -= 1
    if keep < len(parts) and parts[keep - 1][-1:] in "0123456789})":
        return " ".join(parts[:keep])
    return s


_UNICODE = {
    "≤": "\\le ",
    "≥": "\\ge ",
    "≠": "\\ne ",
    "×": "\\times ",
    "·": "\\cdot ",
    "−": "-",
    "π": "\\pi ",
    "∞": "\\infty ",
    "√": "\\sqrt ",
    "±": "\\pm ",
    "∪": "\\cup ",
    "÷": "\\div ",
}
_UNICODE_RE = re.compile("|".join(_UNICODE))


def normalize(answer: str) -> Normalized:
    """Normalise one answer string (gold or extracted)."""
    s = _strip_delimiters(answer[:MAX_ANSWER_CHARS])
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    s = s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = s.replace("\\left.", "").replace("\\right.", "")
    s = _SIZE_COMMANDS.sub("", s)
    s = _THOUSANDS_MARKED.sub("", s)
    s = _SPACES.sub(" ", s)
    degrees = _DEGREES.search(s) is not None or "degree" in s
    s = _DEGREES.sub("", s)
    textual = False
    stripped = s.strip()
    whole_text = _TEXT_COMMANDS.fullmatch(stripped)
    if whole_text and _is_words(whole_text.group(1)):
        textual = True
    s = _TEXT_COMMANDS.sub(lambda m: " " + m.group(1) + " ", s)
    s = s.replace("\\$", "").replace("$", "")
    percent = "%" in s
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\s+", " ", s).strip()
    if not textual:
        s = _strip_units(s)
        s = s.replace("degrees", "").strip()
    s = _MEMBERSHIP.sub("", s)
    s = _EMPTY_SET.sub(lambda _: "\\emptyset", s)
    s = _CONJUNCTIONS.sub(",", s)
    s = s.rstrip(".").strip()
    if _PLAIN_THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return Normalized(text=s, percent=percent, degrees=degrees, textual=textual)


def comparison_key(text: str) -> str:
    """A key for the exact-string fast path: spaces removed except between two letters."""
    return re.sub(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])", "", text)
