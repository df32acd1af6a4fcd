"""Which prompts a step uses, and which of them a rollout replica generates.

Prompts for step k are a pure function of (seed, k): the pool is walked in epochs, each epoch a
permutation seeded by (seed, epoch), and step k takes positions [k*n, (k+1)*n) of that endless
stream. A restarted worker therefore regenerates exactly its share.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace

from oreal.trajectory import Prompt


def _epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    digest = hashlib.sha256(f"oreal-prompts/{seed}/{epoch}".encode()).digest()
    order = list(range(size))
    random.Random(int.from_bytes(digest[:8], "little")).shuffle(order)
    return order


def step_prompts(pool: Sequence[Prompt], seed: int, step: int, count: int) -> list[Prompt]:
    """The `count` prompts of `step`; a prompt repeated within one step gets a `~N` id suffix."""
    if not pool:
        raise ValueError("the prompt pool is empty")
    if count < 1 or step < 0:
        raise ValueError(f"need count >= 1 and step >= 0, got count={count}, step={step}")
    size = len(pool)
    chosen: list[Prompt] = []
    position = step * count
    cache: dict[int, list[int]] = {}
    for offset in range(position, position + count):
        epoch, index = divmod(offset, size)
        if epoch not in cache:
            cache[epoch] = _epoch_order(size, seed, epoch)
        chosen.append(pool[cache[epoch][index]])
    counts: dict[str, int] = {}
    unique: list[Prompt] = []
    for prompt in chosen:  # keys (step, prompt_id, sample) must stay unique inside a step
        n = counts.get(prompt.prompt_id, 0)
        counts[prompt.prompt_id] = n + 1
        unique.append(prompt if n == 0 else replace(prompt, prompt_id=f"{prompt.prompt_id}~{n}"))
    return unique


def shard(items: Sequence[Prompt], index: int, replicas: int) -> list[Prompt]:
    """Replica `index` of `replicas` takes a contiguous block; blocks differ in size by at most one."""
    if replicas < 1 or not 0 <= index < replicas:
        raise ValueError(f"need 0 <= index < replicas, got index={index}, replicas={replicas}")
    n = len(items)
    return list(items[index * n // replicas : (index + 1) * n // replicas])
