"""The worker process: runs the checks the calling process could not decide, with sympy.

Started by `oreal.verifier.pool` through a 'forkserver' (or 'spawn') context, so it never inherits
torch or CUDA state from the parent. It reads (gold, answer) pairs from a pipe and answers with
("ok", bool) or ("error", message), plus its peak resident memory so the pool can recycle it.
"""

from __future__ import annotations

import contextlib
import resource
from multiprocessing.connection import Connection

from .rules import check
from .symbolic import SYMPY


def _warm_up() -> None:
    """Run one sympy check at import, so that lazily imported sympy modules and caches are ready.

    With the 'forkserver' context this runs once, in the fork server (see `pool.PRELOAD`), and every
    worker forked from it starts warm instead of paying ~0.5 s on its first check.
    """
    with contextlib.suppress(Exception):  # warming up is an optimisation, never a reason to fail
        check("\\cot x + \\sqrt[3]{2}", "\\frac{\\cos x}{\\sin x} + 2^{1/3}", SYMPY)


_warm_up()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def serve(conn: Connection, address_space_bytes: int | None) -> None:
    if address_space_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    conn.send(("ready", _peak_rss_bytes()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        gold, answer = message
        try:
            reply = ("ok", check(gold, answer, SYMPY) is True)
        except MemoryError:
            reply = ("error", "out of memory")
        except RecursionError:
            reply = ("error", "expression nested too deeply")
        except Exception as err:  # noqa: BLE001 - any failure is a verdict of 'error', never a crash
            reply = ("error", f"{type(err).__name__}: {str(err)[:200]}")
        conn.send((reply, _peak_rss_bytes()))
