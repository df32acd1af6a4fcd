"""Exact arithmetic without sympy: Laurent polynomials over Q(i, square roots).

A value is a dict mapping (radicand, monomial) to a rational coefficient, meaning
sum(coefficient * sqrt(radicand) * monomial). The radicand is a square-free integer (1 for none,
-1 for i, -3 for i*sqrt(3)); the monomial is a sorted tuple of (symbol, exponent) where pi and e are
symbols too. Square roots of distinct square-free integers are linearly independent over Q, and we
treat pi, e and the variables as independent transcendentals, so two values are equal exactly when
their dicts are equal. This decides integers, fractions, decimals, radicals, complex numbers,
multiples of pi and polynomial answers in microseconds, so most checks never reach sympy.

Every operation has a size guard: a value that would grow past the limits raises `TooBig`, and
anything outside the domain (sin, nested radicals, division by a sum) raises `Unsupported`; the
caller then falls back to numeric evaluation and, if needed, to sympy in a killable worker.
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd, isqrt

from .budget import check as check_budget

MAX_TERMS = 4_000
MAX_PRODUCT_WORK = 400_000
MAX_BITS = 40_000
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 2_000
MAX_RADICAND = 10**12

Monomial = tuple[tuple[str, int], ...]
Key = tuple[int, Monomial]
Value = dict[Key, Fraction]


class Unsupported(ValueError):
    """The expression is outside the exact domain."""


class TooBig(ValueError):
    """The exact value would exceed the size limits."""


def _primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(sieve[p * p :: p]))
    return [p for p in range(limit + 1) if sieve[p]]


_SMALL_PRIMES = _primes(10_000)


def square_free(n: int) -> tuple[int, int]:
    """n = k^2 * s with s square-free; returns (k, s). Only for 0 < n <= MAX_RADICAND."""
    if n > MAX_RADICAND:
        raise TooBig("radicand too large to factor quickly")
    k, s = 1, 1
    for p in _SMALL_PRIMES:
        if p * p > n:
            break
        count = 0
        while n % p == 0:
            n //= p
            count += 1
        k *= p ** (count // 2)
        s *= p ** (count % 2)
    # What is left has no factor below 10^4 and is below 10^12: 1, a prime, p*q or p^2.
    root = isqrt(n)
    if root * root == n and n > 1:
        return k * root, s
    return k, s * n


def constant(q: Fraction | int) -> Value:
    return {(1, ()): Fraction(q)} if q else {}


def symbol(name: str) -> Value:
    return {(1, ((name, 1),)): Fraction(1)}


def _check(value: Value) -> Value:
    if len(value) > MAX_TERMS:
        raise TooBig("too many terms")
    return value


def add(a: Value, b: Value) -> Value:
    check_budget()
    out = dict(a)
    for key, coef in b.items():
        total = out.get(key, 0) + coef
        if total:
            out[key] = total
        else:
            out.pop(key, None)
    return _check(out)


def neg(a: Value) -> Value:
    return {key: -coef for key, coef in a.items()}


def _mul_monomials(m1: Monomial, m2: Monomial) -> Monomial:
    if not m1:
        return m2
    if not m2:
        return m1
    exps = dict(m1)
    for name, e in m2:
        exps[name] = exps.get(name, 0) + e
    return tuple(sorted((n, e) for n, e in exps.items() if e))


def _mul_radicands(r1: int, r2: int) -> tuple[int, int]:
    """sqrt(r1) * sqrt(r2) = factor * sqrt(r) for square-free r1, r2; returns (factor, r)."""
    if r1 == 1:
        return 1, r2
    if r2 == 1:
        return 1, r1
    imaginary = (r1 < 0) + (r2 < 0)  # sqrt(-m) = i*sqrt(m)
    g = gcd(abs(r1), abs(r2))
    rest = (abs(r1) // g) * (abs(r2) // g)
    if imaginary == 1:
        return g, -rest
    return (-g if imaginary == 2 else g), rest


def mul(a: Value, b: Value) -> Value:
    if len(a) * len(b) > MAX_PRODUCT_WORK:
        raise TooBig("product too large")
    out: Value = {}
    for (r1, m1), c1 in a.items():
        check_budget()
        for (r2, m2), c2 in b.items():
            factor, r = _mul_radicands(r1, r2)
            key = (r, _mul_monomials(m1, m2))
            total = out.get(key, 0) + c1 * c2 * factor
            if total:
                out[key] = total
            else:
                out.pop(key, None)
    for coef in out.values():
        if coef.numerator.bit_length() + coef.denominator.bit_length() > MAX_BITS:
            raise TooBig("coefficient too large")
    return _check(out)


def inverse(a: Value) -> Value:
    """1/a for a single term c * sqrt(r) * m: sqrt(r)/(c*r) * m^-1 (since sqrt(r)^2 = r)."""
    if len(a) != 1:
        raise Unsupported("division by a sum")
    (((r, m), c),) = a.items()
    inv_m = tuple((name, -e) for name, e in m)
    return {(r, inv_m): 1 / (c * r)} if r != 1 else {(1, inv_m): 1 / c}


def power(a: Value, n: int) -> Value:
    if abs(n) > MAX_EXPONENT:
        raise TooBig("exponent too large")
    if n < 0:
        return power(inverse(a), -n)
    if n == 0:
        if not a:
            raise Unsupported("0^0")
        return constant(1)
    if len(a) == 1:
        (((r, m), c),) = a.items()
        bits = (c.numerator.bit_length() + c.denominator.bit_length() + abs(r).bit_length()) * n
        if bits > MAX_BITS:
            raise TooBig("power too large")
        coef = c**n * Fraction(r) ** (n // 2)
        return {(r if n % 2 else 1, tuple((name, e * n) for name, e in m)): coef}
    if n > 64:
        raise TooBig("expansion too large")
    result, base = constant(1), a
    while n:
        if n & 1:
            result = mul(result, base)
        n >>= 1
        if n:
            base = mul(base, base)
    return result


def as_rational(a: Value) -> Fraction | None:
    if not a:
        return Fraction(0)
    if len(a) == 1 and (1, ()) in a:
        return a[(1, ())]
    return None


def sqrt(a: Value) -> Value:
    """Principal square root of a rational: sqrt(p/d) = sqrt(p*d)/d, times i when negative."""
    q = as_rational(a)
    if q is None:
        raise Unsupported("square root of a non-rational")
    if q == 0:
        return {}
    k, s = square_free(abs(q.numerator) * q.denominator)
    return {(s if q > 0 else -s, ()): Fraction(k, q.denominator)}


def nth_root(a: Value, n: int) -> Value:
    if n == 2:
        return sqrt(a)
    q = as_rational(a)
    if q is None or q < 0 or n <= 0 or n > 64:
        raise Unsupported("root")
    num, den = _int_root(q.numerator, n), _int_root(q.denominator, n)
    if num is None or den is None:
        raise Unsupported("irrational root")
    return constant(Fraction(num, den))


def _int_root(x: int, n: int) -> int | None:
    if x.bit_length() > MAX_BITS:
        raise TooBig("root of a huge number")
    guess = round(x ** (1.0 / n)) if x.bit_length() < 1000 else None
    if guess is None:
        return None
    for candidate in (guess - 1, guess, guess + 1):
        if candidate >= 0 and candidate**n == x:
            return candidate
    return None


def factorial(n: Fraction) -> int:
    if n.denominator != 1 or n < 0:
        raise Unsupported("factorial of a non-integer")
    if n > MAX_FACTORIAL:
        raise TooBig("factorial too large")
    return _product(1, int(n))


def _product(low: int, high: int) -> int:
    """low * (low+1) * ... * high by splitting in halves (fast for big factorials)."""
    check_budget()
    if high - low < 16:
        result = 1
        for k in range(max(low, 1), high + 1):
            result *= k
        return result
    middle = (low + high) // 2
    return _product(low, middle) * _product(middle + 1, high)
