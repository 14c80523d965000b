"""Demo samplers: which training examples a query sees, as a pure function of stable keys.

A sample's demos depend only on (benchmark, split, seed, sample id, k) — never on rank, batch position,
``--limit`` or the number of processes — and are nested: the k-shot list is the first k of any longer list.
Randomness comes from ``random.Random`` seeded by a SHA-256 of those keys (no global seeding).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from flamingo_eval.registry import SAMPLERS
from flamingo_eval.types import Sample


def keyed_rng(*keys: object) -> random.Random:
    """A private RNG whose stream is a pure function of ``keys``."""
    digest = hashlib.sha256("|".join(str(k) for k in keys).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def prefix_shuffle(rng: random.Random, n: int, k: int) -> list[int]:
    """First k indices of a Fisher-Yates shuffle of range(n): the k-list is a prefix of the (k+1)-list."""
    swapped: dict[int, int] = {}
    out = []
    for i in range(min(k, n)):
        j = rng.randrange(i, n)
        vi, vj = swapped.get(i, i), swapped.get(j, j)
        swapped[j] = vi
        out.append(vj)
    return out


def query_set(pool: Sequence[Sample], benchmark: str, split: str, seed: int, size: int) -> list[Sample]:
    """The per-trial demo pool ("query set"): ``size`` examples of the demo split, in drawn order."""
    idx = prefix_shuffle(keyed_rng(benchmark, split, seed, "query_set"), len(pool), size)
    return [pool[i] for i in idx]


class RandomSampler:
    """Independent demos per query (the Flamingo/OpenFlamingo protocol)."""

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int) -> None:
        self.pool, self.keys = pool, (benchmark, split, seed)

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        rng = keyed_rng(*self.keys, "random", sample.id)
        order = prefix_shuffle(rng, len(self.pool), k + 1)  # one spare in case the query is in the pool
        return [self.pool[i] for i in order if self.pool[i].id != sample.id][:k]


class FixedSampler:
    """The same demos for every query."""

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int) -> None:
        self.pool, self.keys = pool, (benchmark, split, seed)

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        order = prefix_shuffle(keyed_rng(*self.keys, "fixed"), len(self.pool), k + 1)
        return [self.pool[i] for i in order if self.pool[i].id != sample.id][:k]


SAMPLERS.register("random")(RandomSampler)
SAMPLERS.register("fixed")(FixedSampler)
