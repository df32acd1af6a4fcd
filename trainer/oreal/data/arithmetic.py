"""Small synthetic arithmetic word problems for the quickstart, generated deterministically.

`difficulty` sets the size of the numbers: at 1 they stay below 10, at 2 below 20, and so on, so
the set-up can pick the level at which a small model solves some but not all problems.

    python -m oreal.data.arithmetic --out models/arithmetic/train.jsonl --count 400 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ("Tom", "Anna", "Ravi", "Mia", "Leo", "Sara", "Ken", "Lina", "Omar", "Eva")
ITEMS = ("apples", "pencils", "marbles", "stickers", "books", "cookies", "coins", "shells")

# (template, operation): {a} and {b} are the numbers, the answer is op(a, b).
TEMPLATES = (
    ("What is {a} plus {b}?", "+"),
    ("What is {a} minus {b}?", "-"),
    ("What is {a} times {b}?", "*"),
    ("{name} has {a} {item}. {name} buys {b} more {item}. How many {item} does {name} have now?", "+"),
    ("{name} has {a} {item} and gives {b} of them to a friend. How many {item} are left?", "-"),
    ("There are {a} boxes with {b} {item} in each box. How many {item} are there in total?", "*"),
    ("{name} had {a} {item}, found {b} more and then found {b} more again. How many {item} now?", "++"),
)


def make_problem(rng: random.Random, difficulty: int) -> dict[str, str]:
    template, op = rng.choice(TEMPLATES)
    top = 10 * difficulty
    a, b = rng.randint(2, top), rng.randint(2, top)
    if op == "-" and b > a:
        a, b = b, a
    if op == "*":
        a, b = rng.randint(2, 2 + 3 * difficulty), rng.randint(2, 9)
    answer = {"+": a + b, "-": a - b, "*": a * b, "++": a + 2 * b}[op]
    text = template.format(name=rng.choice(NAMES), item=rng.choice(ITEMS), a=a, b=b)
    return {"problem": text, "answer": str(answer)}


def make_problems(count: int, seed: int, difficulty: int = 1) -> list[dict[str, str]]:
    rng = random.Random(f"oreal-arithmetic/{seed}/{difficulty}")
    rows = []
    for index in range(count):
        row = make_problem(rng, difficulty)
        rows.append({"id": f"arith-{seed}-{index}", **row})
    return rows


def write_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic arithmetic word problems as JSONL.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", type=int, default=1)
    args = parser.parse_args(argv)
    write_jsonl(make_problems(args.count, args.seed, args.difficulty), args.out)
    print(f"wrote {args.count} problems to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
