"""A small, safe LaTeX-to-expression parser for final answers.

It never evaluates text: it tokenizes with one linear regular expression and builds plain tuples
(picklable, so they can be sent to worker processes). Nothing here imports sympy.

Expression nodes::

    ("num", Fraction, dec)      dec is None for exact literals, else (significant digits, relative half-ulp)
    ("sym", name)               a variable
    ("const", "pi" | "e" | "i" | "inf")
    ("add", (a, b, ...)) ("neg", a) ("mul", (a, b, ...)) ("div", a, b) ("pow", a, b)
    ("root", a, n)              n-th root, n an int
    ("fact", a) ("binom", a, b) ("abs", a) ("func", name, a) ("log", a, base)
    ("base", digits, base)      a numeral written in another base, e.g. 52_8

Answer (structure) nodes are built in `oreal.verifier.structure`.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_DEPTH = 100
MAX_TOKENS = 60_000
MAX_DIGITS = 2_000


class ParseError(ValueError):
    """The text is not an expression this parser understands."""


_TOKEN = re.compile(
    r"(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+(?![\w]))?)"
    r"|(?P<begin>\\begin\{[a-zA-Z*]+\})|(?P<end>\\end\{[a-zA-Z*]+\})"
    r"|(?P<cmd>\\[a-zA-Z]+)|(?P<esc>\\[{}|])|(?P<rowsep>\\\\)"
    r"|(?P<op><=|>=|!=|\*\*|[-+*/^_=<>(){}\[\],;!|&:'])"
    r"|(?P<letter>[a-zA-Z])|(?P<space>\s+)|(?P<other>.)",
    re.S,
)

FUNCTIONS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "exp", "ln", "log", "lg",
}  # fmt: skip
GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}  # fmt: skip
RELATIONS = {
    "=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "\\le": "<=", "\\leq": "<=",
    "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=", "\\lt": "<", "\\gt": ">",
    "\\ne": "!=", "\\neq": "!=",
}  # fmt: skip
_MUL_OPS = {"*", "\\cdot", "\\times", "**"}
_DIV_OPS = {"/", "\\div"}
_OPEN = {"(": ")", "[": "]", "{": "}", "\\{": "\\}", "\\lfloor": "\\rfloor", "\\lceil": "\\rceil"}
_CLOSE = {")", "]", "}", "\\}", "\\rfloor", "\\rceil"}

Token = tuple[str, str]  # (kind, text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "space":
            continue
        if kind == "other":
            raise ParseError(f"unexpected character {match.group(0)!r}")
        value = match.group(0)
        tokens.append(("op" if kind in ("esc", "rowsep") else kind, value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("answer too long")
    return collapse_parentheses(tokens)


def match_brackets(tokens: list[Token]) -> list[int]:
    """For every opening bracket, the index of its closing bracket (-1 elsewhere).

    ( and [ close with either ) or ] so that half-open intervals such as (3,4] match.
    """
    result = [-1] * len(tokens)
    stack: list[int] = []
    for index, (kind, value) in enumerate(tokens):
        if kind != "op" and kind != "cmd":
            continue
        if value in _OPEN:
            stack.append(index)
        elif value in _CLOSE and stack:
            result[stack.pop()] = index
    return result


def collapse_parentheses(tokens: list[Token]) -> list[Token]:
    """Drop redundant pairs: ((x)) -> (x), in linear time, so deep nesting needs no recursion."""
    pairs = match_brackets(tokens)
    drop: set[int] = set()
    for i, j in enumerate(pairs):
        if j > 0 and tokens[i][1] == "(" and i + 1 < j and tokens[i + 1][1] == "(" and pairs[i + 1] == j - 1:
            drop.update((i, j))
    if not drop:
        return tokens
    return [t for k, t in enumerate(tokens) if k not in drop]


def _digits_fraction(text: str) -> tuple[Fraction, tuple[int, float] | None]:
    """Exact value of a numeric literal and, for decimals, (significant digits, relative half-ulp)."""
    mantissa, _, exponent = text.lower().partition("e")
    if len(mantissa) > MAX_DIGITS or len(exponent) > 6:
        raise ParseError("number too long")
    value = Fraction(mantissa) * (Fraction(10) ** int(exponent or 0))
    if "." not in mantissa and not exponent:
        return value, None
    decimals = len(mantissa.partition(".")[2])
    significant = len(mantissa.replace(".", "").lstrip("0")) or 1
    if value == 0:
        return value, (significant, 1.0)
    half_ulp = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
    return value, (significant, float(half_ulp / abs(value)))


def _repeating(prefix: str, repeat: str) -> Fraction:
    r"""0.1\overline{6} = 0.1 + 6 / (10^1 * (10^1 - 1))."""
    if "." not in prefix or "e" in prefix.lower() or len(repeat) > MAX_DIGITS:
        raise ParseError("bad repeating decimal")
    decimals = len(prefix.partition(".")[2])
    return Fraction(prefix) + Fraction(int(repeat), 10**decimals * (10 ** len(repeat) - 1))


class ExpressionParser:
    """Recursive descent over a token list; one instance per expression."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # -- helpers -------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def value(self, offset: int = 0) -> str | None:
        token = self.peek(offset)
        return token[1] if token else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ParseError("unexpected end of answer")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.value() != value:
            raise ParseError(f"expected {value!r}, got {self.value()!r}")
        self.pos += 1

    def parse(self) -> tuple:
        node = self.expr()
        if self.pos != len(self.tokens):
            raise ParseError(f"unexpected {self.value()!r}")
        return node

    # -- grammar -------------------------------------------------------------------------------
    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("answer nested too deeply")

    def expr(self) -> tuple:
        self._enter()
        terms = [self.term()]
        while self.value() in ("+", "-"):
            op = self.take()[1]
            term = self.term()
            terms.append(term if op == "+" else ("neg", term))
        self.depth -= 1
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def term(self) -> tuple:
        node = self.factor()
        while True:
            value = self.value()
            if value in _MUL_OPS:
                self.pos += 1
                node = _mul(node, self.factor())
            elif value in _DIV_OPS:
                self.pos += 1
                node = ("div", node, self.factor())
            elif self._starts_primary():
                node = _mul(node, self.power())
            else:
                return node

    def factor(self) -> tuple:
        self._enter()
        value = self.value()
        if value == "-":
            self.pos += 1
            node = ("neg", self.factor())
        elif value == "+":
            self.pos += 1
            node = self.factor()
        else:
            node = self.power()
        self.depth -= 1
        return node

    def power(self) -> tuple:
        base = self.postfix()
        if self.value() == "^":
            self.pos += 1
            exponent = self.group() if self.value() == "{" else self._exponent_atom()
            node = ("pow", base, exponent)
            while self.value() == "!":
                self.pos += 1
                node = ("fact", node)
            return node
        return base

    def _exponent_atom(self) -> tuple:
        if self.value() in ("-", "+"):
            sign = self.take()[1]
            self._enter()  # a guard against long sign chains such as x^- - - 1
            atom = self._exponent_atom()
            self.depth -= 1
            return ("neg", atom) if sign == "-" else atom
        token = self.peek()
        if token and token[0] == "num" and len(token[1]) > 1 and token[1].isdigit():
            self._split_digit()  # x^23 means x^2 * 3 in LaTeX; honour that
        return self.postfix()

    def postfix(self) -> tuple:
        node = self.primary()
        while self.value() == "!":
            self.pos += 1
            node = ("fact", node)
        return node

    def group(self) -> tuple:
        """A braced group {...}, or a single token argument as in \\frac12."""
        if self.value() == "{":
            self.pos += 1
            node = self.expr()
            self.expect("}")
            return node
        token = self.peek()
        if token and token[0] == "num" and token[1].isdigit() and len(token[1]) > 1:
            self._split_digit()
        return self.postfix()

    def _split_digit(self) -> None:
        kind, text = self.tokens[self.pos]
        self.tokens[self.pos : self.pos + 1] = [(kind, text[0]), (kind, text[1:])]

    def _starts_primary(self) -> bool:
        token = self.peek()
        if token is None:
            return False
        kind, value = token
        if kind in ("num", "letter"):
            return True
        if kind == "cmd":
            return value in ("\\frac", "\\sqrt", "\\pi", "\\binom", "\\infty", "\\lfloor", "\\lceil") or (
                value[1:] in FUNCTIONS or value[1:] in GREEK
            )
        return value in ("(", "[", "{")

    def primary(self) -> tuple:
        self._enter()
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> tuple:
        kind, value = self.take()
        if kind == "num":
            return self._number(value)
        if kind == "letter":
            return self._letter(value)
        if value in ("(", "[", "{"):
            node = self.expr()
            if self.value() not in (")", "]", "}"):
                raise ParseError("unbalanced brackets")
            self.pos += 1
            return node
        if value == "|":
            node = self.expr()
            self.expect("|")
            return ("abs", node)
        if kind == "cmd":
            return self._command(value)
        raise ParseError(f"unexpected {value!r}")

    def _number(self, text: str) -> tuple:
        value, dec = _digits_fraction(text)
        node = ("num", value, dec)
        if self.value() == "_" and dec is None:
            self.pos += 1
            base_token = self.take()
            if base_token[1] == "{":
                base_token = self.take()
                self.expect("}")
            if base_token[0] != "num" or not base_token[1].isdigit():
                raise ParseError("bad base subscript")
            return ("base", text, int(base_token[1]))
        if self.value() == "\\overline":  # a repeating decimal, 0.\overline{3} = 1/3
            self.pos += 1
            return ("num", _repeating(text, self._digits_group()), None)
        if dec is None and self.value() == "\\frac":
            start = self.pos
            self.pos += 1
            numerator, denominator = self.group(), self.group()
            if numerator[0] == denominator[0] == "num" and numerator[2] is None and denominator[2] is None:
                return ("add", (node, ("div", numerator, denominator)))  # mixed number 1\frac{4}{5}
            self.pos = start
        return node

    def _digits_group(self) -> str:
        self.expect("{")
        token = self.take()
        self.expect("}")
        if token[0] != "num" or not token[1].isdigit():
            raise ParseError("expected digits")
        return token[1]

    def _letter(self, letter: str) -> tuple:
        if self.value() == "_":
            self.pos += 1
            sub = self.take()
            if sub[1] == "{":
                parts = []
                while self.value() not in ("}", None):
                    parts.append(self.take()[1])
                self.expect("}")
                return ("sym", f"{letter}_{''.join(parts)}")
            return ("sym", f"{letter}_{sub[1]}")
        if letter == "e":
            return ("const", "e")
        if letter == "i":
            return ("const", "i")
        return ("sym", letter)

    def _command(self, name: str) -> tuple:
        bare = name[1:]
        if name == "\\frac":
            return ("div", self.group(), self.group())
        if name == "\\binom":
            return ("binom", self.group(), self.group())
        if name == "\\sqrt":
            degree = 2
            if self.value() == "[":
                self.pos += 1
                token = self.take()
                if token[0] != "num" or not token[1].isdigit():
                    raise ParseError("unsupported root degree")
                degree = int(token[1])
                self.expect("]")
            return ("root", self.group(), degree)
        if name == "\\pi":
            return ("const", "pi")
        if name == "\\infty":
            return ("const", "inf")
        if name in ("\\lfloor", "\\lceil"):
            node = self.expr()
            self.expect("\\rfloor" if name == "\\lfloor" else "\\rceil")
            return ("func", "floor" if name == "\\lfloor" else "ceil", node)
        if bare in GREEK:
            return ("sym", bare)
        if bare in FUNCTIONS:
            return self._function(bare)
        raise ParseError(f"unsupported command {name}")

    def _function(self, name: str) -> tuple:
        base = None
        if name == "log" and self.value() == "_":
            self.pos += 1
            base = self.group()
        power = None
        if self.value() == "^":
            self.pos += 1
            power = self.group()
        argument = self.group() if self.value() in ("(", "{") else self.power()
        if (
            power is not None
            and power == ("neg", ("num", Fraction(1), None))
            and name in ("sin", "cos", "tan")
        ):
            return ("func", "arc" + name, argument)
        if name == "log" and base is not None:
            node = ("log", argument, base)
        elif name == "lg":
            node = ("log", argument, ("num", Fraction(10), None))
        else:
            node = ("func", "log" if name == "ln" else name, argument)
        return ("pow", node, power) if power is not None else node


def _mul(a: tuple, b: tuple) -> tuple:
    if a[0] == "mul":
        return ("mul", a[1] + (b,))
    return ("mul", (a, b))


def parse_expression(tokens: list[Token]) -> tuple:
    if not tokens:
        raise ParseError("empty expression")
    return ExpressionParser(list(tokens)).parse()
