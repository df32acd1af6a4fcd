"""Answers as structures: lists, sets, tuples, intervals, unions, equations, matrices, text.

Nodes (plain tuples)::

    ("expr", e)                           a single expression (see `oreal.verifier.latex`)
    ("eq", lhs, rhs)                      an equation such as x=3 or 5x-7y+11z+4=0
    ("rel", (e0, e1, ...), (op0, ...))    an inequality chain, ops in < <= > >= !=
    ("interval", left_closed, lo, hi, right_closed)
    ("pair", a, b)                        "(a, b)": an open interval or an ordered pair
    ("tuple", (items...))                 ordered
    ("set", (items...))                   unordered: {..}, comma lists, and \\pm expansions
    ("union", (items...))
    ("matrix", ((row...), ...))
    ("text", words) ("choice", letter)
"""

from __future__ import annotations

import re

from .latex import RELATIONS, ParseError, Token, match_brackets, parse_expression, tokenize
from .normalize import Normalized

_KNOWN_WORDS = re.compile(
    r"(?<!\\)\b(?!(?:sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh|tanh|exp|ln|log|lg|sqrt|frac|pi|"
    r"infty|cdot|times|div|pm|mp|le|leq|ge|geq|ne|neq|cup|in|binom|lt|gt|begin|end|pmatrix|bmatrix|matrix)\b)"
    r"[A-Za-z]{3,}\b"
)
_CHOICE = re.compile(r"\(?([A-Ea-e])\)?")
_CHOICE_WITH_TEXT = re.compile(r"\(([A-E])\)\s+\S.*")  # "(C) 42"
_MATRIX_ENVS = ("pmatrix", "bmatrix", "matrix", "Bmatrix", "smallmatrix")
MAX_ITEMS = 256  # elements of a list, set, tuple or matrix
MAX_PLUS_MINUS = 4  # each \pm doubles the answer


def _text_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def parse_answer(normalized: Normalized) -> tuple:
    """Structure of a normalised answer; raises ParseError if it is not understood."""
    text = normalized.text
    if not text:
        raise ParseError("empty answer")
    choice = _CHOICE.fullmatch(text)
    if choice and (text.startswith("(") or text.isupper()):
        return ("choice", choice.group(1).upper())
    choice = _CHOICE_WITH_TEXT.fullmatch(text)
    if choice:
        return ("choice", choice.group(1))
    if normalized.textual or _KNOWN_WORDS.search(text):
        return ("text", _text_key(text))
    return _structure(tokenize(text))


def _split_top(tokens: list[Token], separators: set[str]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        value = token[1]
        if value in ("(", "[", "{", "\\{", "\\lfloor", "\\lceil") or token[0] == "begin":
            depth += 1
        elif value in (")", "]", "}", "\\}", "\\rfloor", "\\rceil") or token[0] == "end":
            depth -= 1
        if depth == 0 and value in separators:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _flatten_sets(items: list[tuple]) -> tuple:
    flat: list[tuple] = []
    for item in items:
        flat.extend(item[1] if item[0] == "set" else (item,))
    return tuple(flat)


def _structure(tokens: list[Token]) -> tuple:
    parts = _split_top(tokens, {",", ";"})
    if len(parts) > 1:
        if any(not part for part in parts) or len(parts) > MAX_ITEMS:
            raise ParseError("empty list element or too many elements")
        return ("set", _flatten_sets([_item(part) for part in parts]))
    return _item(tokens)


def _item(tokens: list[Token]) -> tuple:
    if not tokens:
        raise ParseError("empty item")
    unions = _split_top(tokens, {"\\cup"})
    if len(unions) > 1:
        return ("union", tuple(_item(part) for part in unions))
    if sum(value in ("\\pm", "\\mp") for _, value in tokens) > MAX_PLUS_MINUS:
        raise ParseError("too many \\pm")
    for index, (_, value) in enumerate(tokens):
        if value in ("\\pm", "\\mp") and _depth_at(tokens, index) == 0:
            plus = tokens[:index] + [("op", "+" if value == "\\pm" else "-")] + tokens[index + 1 :]
            minus = tokens[:index] + [("op", "-" if value == "\\pm" else "+")] + tokens[index + 1 :]
            return ("set", _flatten_sets([_item(plus), _item(minus)]))
    first, last = tokens[0][1], tokens[-1][1]
    pairs = match_brackets(tokens)
    if first == "\\{" and pairs[0] == len(tokens) - 1:
        inner = tokens[1:-1]
        if not inner:
            return ("set", ())
        elements = _split_top(inner, {",", ";"})
        if len(elements) > MAX_ITEMS:
            raise ParseError("set too large")
        return ("set", _flatten_sets([_item(p) for p in elements]))
    if first in ("(", "[") and last in (")", "]") and pairs[0] == len(tokens) - 1:
        inner = _split_top(tokens[1:-1], {","})
        if len(inner) > MAX_ITEMS:
            raise ParseError("tuple too long")
        if len(inner) == 2:
            lo, hi = (parse_expression(part) for part in inner)
            if first == "(" and last == ")":
                return ("pair", lo, hi)
            return ("interval", first == "[", lo, hi, last == "]")
        if len(inner) > 2:
            return ("tuple", tuple(_element(part) for part in inner))
    if tokens[0][0] == "begin" and tokens[-1][0] == "end":
        return _matrix(tokens)
    return _relation(tokens)


def _depth_at(tokens: list[Token], index: int) -> int:
    depth = 0
    for kind, value in tokens[:index]:
        if value in ("(", "[", "{", "\\{") or kind == "begin":
            depth += 1
        elif value in (")", "]", "}", "\\}") or kind == "end":
            depth -= 1
    return depth


def _element(tokens: list[Token]) -> tuple:
    node = _item(tokens)
    return node[1] if node[0] == "expr" else node


def _matrix(tokens: list[Token]) -> tuple:
    env = tokens[0][1][len("\\begin{") : -1]
    if env not in _MATRIX_ENVS:
        raise ParseError(f"unsupported environment {env}")
    rows = _split_top(tokens[1:-1], {"\\\\"})
    if rows and not rows[-1]:
        rows = rows[:-1]
    if len(rows) > MAX_ITEMS:
        raise ParseError("matrix too large")
    cells = tuple(tuple(parse_expression(cell) for cell in _split_top(row, {"&"})) for row in rows)
    if sum(len(row) for row in cells) > MAX_ITEMS:
        raise ParseError("matrix too large")
    if not cells or len({len(row) for row in cells}) != 1:
        raise ParseError("ragged matrix")
    return ("matrix", cells)


def _relation(tokens: list[Token]) -> tuple:
    sides: list[list[Token]] = [[]]
    ops: list[str] = []
    depth = 0
    for token in tokens:
        value = token[1]
        if value in ("(", "[", "{", "\\{"):
            depth += 1
        elif value in (")", "]", "}", "\\}"):
            depth -= 1
        if depth == 0 and value in RELATIONS:
            ops.append(RELATIONS[value])
            sides.append([])
        else:
            sides[-1].append(token)
    exprs = tuple(parse_expression(side) for side in sides)
    if not ops:
        return ("expr", exprs[0])
    if ops == ["="]:
        return ("eq", exprs[0], exprs[1])
    if "=" in ops:
        raise ParseError("mixed equation and inequality")
    return ("rel", exprs, tuple(ops))
