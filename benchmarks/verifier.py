"""Benchmark: the oreal verifier against Math-Verify on the same labelled pairs.

    python benchmarks/verifier.py [--data ../shared/data/math500.jsonl] [--workers N] [--timeout S]

Pairs (gold, response, label):
- benchmarks/data/verifier_pairs.jsonl: hand-built, every answer category of issue #3, labelled by
  the mathematics (never by either tool), with these stated conventions: a decimal matches an exact
  value when it is that value rounded to the decimal's own precision and has at least 3 significant
  digits; "25%" matches 25 and 0.25; 90 degrees matches 90 and pi/2; a bare numeral answers a
  base-b question in base b (52 for 52_8); a column vector matches the tuple of its entries; a
  truncated response, or one whose <think> never closed, is wrong.
- MATH-500 (read at run time from ../shared/data/math500.jsonl, never copied): each reference
  answer against itself (correct), and for scalar answers against perturbations that are wrong by
  construction: off by one, wrong sign, swapped fraction, and a 1e-9 relative near miss (the
  1/2^99 versus 1/2^98 trap: equal to six decimal places, not equal).

Both tools see the same responses; the truncation flag is applied to both. Throughput uses all
cores: oreal's `verify_batch` (fast rules in the calling process, sympy in `--workers` processes)
and Math-Verify in a multiprocessing pool of the same size. Latencies are per check, excluding
queueing. Worker start-up is excluded for both. Pathological inputs run last, one at a time.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_MATH500 = ROOT.parent / "shared/data/math500.jsonl"
HAND_PAIRS = HERE / "data/verifier_pairs.jsonl"

_UNSAFE_FOR_PERTURBATION = re.compile(
    r"\\text|\\mbox|\\circ|\\%|\\\$|,|=|\\cup|\\pm|\\infty|matrix|_|\\in|<|>|\\le|\\ge|\\\{"
)
_INTEGER = re.compile(r"-?\d+")
_FRACTION = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_WRAPPERS = (
    "Let me solve this step by step.\n\nPutting everything together, the answer is $\\boxed{{{}}}$.",
    "<think>\nFirst attempt... that gives something else.\n</think>\nTherefore the final answer is $\\boxed{{{}}}$.",
    "We simplify and check the conditions.\n\\[\\boxed{{{}}}\\]",
)


@dataclass(frozen=True)
class Pair:
    category: str
    gold: str
    response: str
    label: bool
    truncated: bool = False
    convention: str | None = None  # the stated convention the label rests on, if any


def _wrap(answer: str, index: int) -> str:
    return _WRAPPERS[index % len(_WRAPPERS)].format(answer)


def _is_scalar(answer: str) -> bool:
    stripped = answer.strip()
    return (
        bool(stripped)
        and stripped not in ("0", "-0")
        and not _UNSAFE_FOR_PERTURBATION.search(stripped)
        and stripped[0] not in "(["
    )


def math500_pairs(path: Path) -> list[Pair]:
    pairs: list[Pair] = []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for index, row in enumerate(rows):
        answer = row["answer"].strip()
        pairs.append(Pair("math500 self", answer, _wrap(answer, index), True))
        if not _is_scalar(answer):
            continue
        if _INTEGER.fullmatch(answer):  # integers: off by one, wrong sign
            n = int(answer)
            pairs.append(Pair("math500 off-by-one", answer, _wrap(str(n + 1), index + 1), False))
            pairs.append(Pair("math500 wrong sign", answer, _wrap(str(-n), index + 2), False))
        else:  # any other non-zero finite scalar x: x + 1 != x and -x != x
            pairs.append(Pair("math500 off-by-one", answer, _wrap(f"{answer} + 1", index + 1), False))
            pairs.append(
                Pair("math500 wrong sign", answer, _wrap(f"-\\left({answer}\\right)", index + 2), False)
            )
        fraction = _FRACTION.fullmatch(answer)
        if fraction and fraction.group(1) != fraction.group(2):
            a, b = fraction.groups()
            pairs.append(
                Pair("math500 swapped fraction", answer, _wrap(f"\\frac{{{b}}}{{{a}}}", index), False)
            )
            pairs.append(Pair("math500 as a/b", answer, _wrap(f"{a}/{b}", index + 1), True))
        # x * (10^9 + 1) / 10^9 agrees with x to eight significant digits but is not equal.
        near = f"\\left({answer}\\right) \\cdot \\frac{{10^{{9}}+1}}{{10^{{9}}}}"
        pairs.append(Pair("math500 near miss", answer, _wrap(near, index), False))
    return pairs


def hand_pairs(path: Path) -> list[Pair]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            fields = (row["category"], row["gold"], row["response"], row["label"])
            pairs.append(Pair(*fields, row.get("truncated", False), row.get("convention")))
    return pairs


# -- Math-Verify (benchmark-only dependency) ---------------------------------------------------
def _math_verify_init() -> None:
    import logging

    import math_verify  # noqa: F401 - import once per worker, outside the timed region

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout with the input


@functools.lru_cache(maxsize=4096)
def _math_verify_gold(gold: str) -> list:
    from math_verify import parse

    return parse(f"${gold}$")  # references repeat: parse each once, as oreal caches its parses


def _math_verify_check(pair: tuple[str, str, bool]) -> tuple[bool, float]:
    from math_verify import parse, verify

    gold, response, truncated = pair
    start = time.perf_counter()
    if truncated:
        return False, time.perf_counter() - start
    try:
        ok = bool(verify(_math_verify_gold(gold), parse(response)))
    except Exception:  # noqa: BLE001 - a crash is a wrong answer for any checker
        ok = False
    return ok, time.perf_counter() - start


def run_math_verify(pairs: list[Pair], workers: int) -> tuple[list[bool], list[float], float]:
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_math_verify_init) as pool:
        pool.map(_math_verify_check, [("1", "\\boxed{1}", False)] * workers * 2)  # warm up
        start = time.perf_counter()
        results = pool.map(
            _math_verify_check, [(p.gold, p.response, p.truncated) for p in pairs], chunksize=8
        )
        wall = time.perf_counter() - start
    return [ok for ok, _ in results], [t for _, t in results], wall


def run_oreal(pairs: list[Pair], workers: int, timeout: float) -> tuple[list[bool], list[float], float]:
    from prometheus_client import REGISTRY

    from oreal.verifier import Verifier

    with Verifier(timeout_seconds=timeout, workers=workers) as verifier:
        verifier.warm_up()
        before = REGISTRY.get_sample_value("oreal_verifier_pool_checks_total") or 0.0
        start = time.perf_counter()
        verdicts = verifier.verify_batch([(p.gold, p.response, p.truncated) for p in pairs])
        wall = time.perf_counter() - start
        pooled = (REGISTRY.get_sample_value("oreal_verifier_pool_checks_total") or 0.0) - before
    print(
        f"oreal: {pooled:.0f} of {len(pairs)} checks needed sympy in a worker; the rest were decided in-process"
    )
    return [v.correct for v in verdicts], [v.seconds for v in verdicts], wall


# -- pathological inputs -----------------------------------------------------------------------
def pathological() -> list[tuple[str, str, str]]:
    polynomial = " + ".join(f"{k}x^{{{k}}}" for k in range(1, 1501))
    return [
        ("9^{9^{9^9}}", "5", "\\boxed{9^{9^{9^9}}}"),
        ("9^{9^{9^9}} vs itself + 1", "9^{9^{9^9}}", "\\boxed{9^{9^{9^9}}+1}"),
        ("(10^{10})!", "5", "\\boxed{(10^{10})!}"),
        ("(10^{10})! vs itself + 1", "(10^{10})!", "\\boxed{(10^{10})!+1}"),
        ("300 nested \\left(", "5", "\\boxed{" + "\\left(" * 300 + "5" + "\\right)" * 300 + "}"),
        ("300 nested sums", "301", "\\boxed{" + "(" * 300 + "1" + "+1)" * 300 + "}"),
        (
            "1,500-term polynomial",
            polynomial,
            "\\boxed{" + " + ".join(f"{k}x^{{{k}}}" for k in range(1500, 0, -1)) + "}",
        ),
        (
            "1,500-term polynomial, one coefficient off",
            polynomial,
            "\\boxed{" + polynomial.replace("777x", "778x") + "}",
        ),
        ("1 MB response", "5", "Let me think. " * 75_000 + "\\boxed{5}"),
        ("1 MB boxed answer", "5", "\\boxed{" + "1+" * 500_000 + "1}"),
    ]


def _math_verify_one(queue: mp.Queue, gold: str, response: str) -> None:
    _math_verify_init()
    queue.put(_math_verify_check((gold, response, False)))


def run_pathological(
    timeout: float, cap: float, skip_math_verify: bool
) -> list[tuple[str, float, str, float | None]]:
    from oreal.verifier import Verifier

    rows = []
    with Verifier(timeout_seconds=timeout, workers=1) as verifier:
        verifier.warm_up()
        for name, gold, response in pathological():
            start = time.perf_counter()
            verdict = verifier.verify(gold, response)
            ours = time.perf_counter() - start
            theirs = None
            if not skip_math_verify:
                ctx = mp.get_context("fork")
                queue = ctx.Queue()
                process = ctx.Process(target=_math_verify_one, args=(queue, gold, response))
                start = time.perf_counter()
                process.start()
                process.join(cap)
                theirs = time.perf_counter() - start
                if process.is_alive():
                    process.kill()
                    process.join()
                    theirs = float("inf")
            rows.append((name, ours, verdict.status, theirs))
    return rows


# -- report ------------------------------------------------------------------------------------
def summarize(name: str, pairs: list[Pair], results: list[bool], latencies: list[float], wall: float) -> dict:
    fp = sum(1 for p, r in zip(pairs, results, strict=True) if r and not p.label)
    fn = sum(1 for p, r in zip(pairs, results, strict=True) if not r and p.label)
    ordered = sorted(latencies)
    return {
        "tool": name,
        "accuracy": 1 - (fp + fn) / len(pairs),
        "fp": fp,
        "fn": fn,
        "throughput": len(pairs) / wall,
        "p50_ms": 1e3 * statistics.median(ordered),
        "p99_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1e3 * ordered[-1],
    }


def print_table(rows: list[dict], n: int, title: str = "pairs") -> None:
    print(f"\n{n} {title}")
    header = f"{'':<12}{'accuracy':>10}{'false +':>9}{'false -':>9}{'pairs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['tool']:<12}{r['accuracy']:>10.2%}{r['fp']:>9}{r['fn']:>9}{r['throughput']:>10.0f}"
            f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.2f}{r['max_ms']:>10.1f}"
        )


def print_errors(name: str, pairs: list[Pair], results: list[bool], limit: int) -> None:
    wrong = [(p, r) for p, r in zip(pairs, results, strict=True) if r != p.label]
    by_category: dict[str, int] = {}
    for p, _ in wrong:
        by_category[p.category] = by_category.get(p.category, 0) + 1
    print(
        f"\n{name}: {len(wrong)} disagreements with the labels, by category: {dict(sorted(by_category.items()))}"
    )
    for p, r in wrong[:limit]:
        answer = p.response[-60:].replace("\n", " ")
        print(f"  [{p.category}] gold={p.gold[:40]!r} response=...{answer!r} label={p.label} said={r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_MATH500, help="MATH-500 jsonl (answer field)")
    parser.add_argument("--pairs", type=Path, default=HAND_PAIRS, help="hand-labelled pairs jsonl")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument(
        "--cap", type=float, default=10.0, help="seconds before a pathological Math-Verify run is killed"
    )
    parser.add_argument("--show-errors", type=int, default=15)
    parser.add_argument("--skip-math-verify", action="store_true")
    args = parser.parse_args(argv)

    pairs = hand_pairs(args.pairs)
    n_hand = len(pairs)
    if args.data.exists():
        pairs += math500_pairs(args.data)
    else:
        print(f"warning: {args.data} not found; MATH-500 pairs skipped", file=sys.stderr)
    print(f"{n_hand} hand-labelled pairs + {len(pairs) - n_hand} MATH-500 pairs; {args.workers} workers")

    ours = run_oreal(pairs, args.workers, args.timeout)
    rows = [summarize("oreal", pairs, *ours)]
    if not args.skip_math_verify:
        theirs = run_math_verify(pairs, args.workers)
        rows.append(summarize("math-verify", pairs, *theirs))
    print_table(rows, len(pairs))
    if len(rows) == 2:
        print(f"throughput ratio oreal/math-verify: {rows[0]['throughput'] / rows[1]['throughput']:.2f}")
    # The same figures on the pairs whose labels rest on no stated convention (rounding, percent, ...).
    plain = [i for i, p in enumerate(pairs) if p.convention is None]
    subset = [pairs[i] for i in plain]
    plain_rows = [
        summarize("oreal", subset, [ours[0][i] for i in plain], [ours[1][i] for i in plain], ours[2])
    ]
    if not args.skip_math_verify:
        plain_rows.append(
            summarize(
                "math-verify", subset, [theirs[0][i] for i in plain], [theirs[1][i] for i in plain], theirs[2]
            )
        )
    print_table(
        plain_rows, len(subset), "pairs whose labels rest on no stated convention (pairs/s: whole run)"
    )
    print_errors("oreal", pairs, ours[0], args.show_errors)
    if not args.skip_math_verify:
        print_errors("math-verify", pairs, theirs[0], args.show_errors)

    print(
        f"\npathological inputs (oreal timeout {args.timeout:.0f} s; Math-Verify killed after {args.cap:.0f} s)"
    )
    patho = run_pathological(args.timeout, args.cap, args.skip_math_verify)
    for name, seconds, status, theirs_seconds in patho:
        if theirs_seconds is None:
            other = ""
        elif theirs_seconds == float("inf"):
            other = f"   math-verify > {args.cap:.0f} s (killed)"
        else:
            other = f"   math-verify {theirs_seconds:8.3f} s"
        print(f"  {name:<44} oreal {seconds:7.3f} s ({status}){other}")
    worst = max(seconds for _, seconds, _, _ in patho)
    print(f"max pathological latency (oreal): {worst:.3f} s (limit {args.timeout + 1:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
