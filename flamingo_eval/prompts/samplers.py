"""Demo samplers: which training examples a query sees, as a pure function of stable keys.

A sample's demos depend only on (benchmark, split, seed, sample id, k) — never on rank, batch position,
``--limit`` or the number of processes — and are nested: the k-shot list is the first k of any longer list.
Randomness comes from ``random.Random`` seeded by a SHA-256 of those keys (no global seeding).
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.registry import SAMPLERS
from flamingo_eval.types import Sample


@dataclass
class SamplerContext:
    """What a sampler may use beyond its query set; built once per run by the runner.

    Samplers are constructed as ``SAMPLERS.get(name)(pool, benchmark, split, seed, context=ctx)``.
    """

    demo_split: Sequence[Sample] = ()
    """The whole demo split (RICES searches all of it, not the per-trial query set)."""
    queries: Sequence[Sample] = ()
    """The evaluation samples (RICES encodes their images)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Run settings a sampler may read (``rices_model``, ``rices_cache_dir``, ``device`` ...)."""
    memo: dict[str, Any] = field(default_factory=dict)
    """Per-run state shared across shots and trials (e.g. RICES features)."""


def keyed_rng(*keys: object) -> random.Random:
    """A private RNG whose stream is a pure function of ``keys``."""
    digest = hashlib.sha256("|".join(str(k) for k in keys).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def prefix_shuffle(rng: random.Random, n: int, k: int) -> list[int]:
    """First k indices of a Fisher-Yates shuffle of range(n): the k-list is a prefix of the (k+1)-list."""
    swapped: dict[int, int] = {}
    out = []
    bits = rng.getrandbits
    for i in range(min(k, n)):
        # j = rng.randrange(i, n), spelled out as CPython does it (rejection sampling on getrandbits of the
        # width's bit length) because randrange's argument checks were half the cost of a 3.2 M-draw
        # VQAv2 plan; tests/unit/test_prompts.py checks it against randrange itself
        width = n - i
        nbits = width.bit_length()
        r = bits(nbits)
        while r >= width:
            r = bits(nbits)
        j = i + r
        vi, vj = swapped.get(i, i), swapped.get(j, j)
        swapped[j] = vi
        out.append(vj)
    return out


def query_set(pool: Sequence[Sample], benchmark: str, split: str, seed: int, size: int) -> list[Sample]:
    """The per-trial demo pool ("query set"): ``size`` examples of the demo split, in drawn order."""
    idx = prefix_shuffle(keyed_rng(benchmark, split, seed, "query_set"), len(pool), size)
    return [pool[i] for i in idx]


class RandomSampler:
    """Independent demos per query (the Flamingo/OpenFlamingo protocol).

    A query's draw is a prefix shuffle keyed by (benchmark, split, seed, sample id), the same for every k,
    so the run's longest draw (largest shot count + 1) is made once per (query, seed) and every shot count
    slices it: 3x fewer keyed RNGs for ``--shots 0 4 8 16 32`` (docs/performance.md). The draws are kept
    per seed as pool indices in one array over the run's queries (``SamplerContext.memo``).
    """

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int,
                 context: SamplerContext | None = None) -> None:
        self.pool, self.keys = pool, (benchmark, split, seed)
        self.draws: _Draws | None = None
        if context is not None and context.queries:
            width = _longest_draw(context.options)
            if width > 1:
                key = f"random:{benchmark}:{split}:{seed}:{len(pool)}"
                if key not in context.memo:
                    context.memo[key] = _Draws(context, len(pool), width)
                self.draws = context.memo[key]

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        order = self.draws.get(self, sample, k + 1) if self.draws is not None else None
        if order is None:
            order = prefix_shuffle(keyed_rng(*self.keys, "random", sample.id), len(self.pool), k + 1)
        # one spare in case the query is in the pool; the k-list is a prefix of any longer one
        return [self.pool[i] for i in order if self.pool[i].id != sample.id][:k]


def _longest_draw(options: Mapping[str, Any]) -> int:
    """Draw length of the run's largest k (``shots``, 0 meaning ``zero_shot_text_demos``), plus the spare."""
    shots = options.get("shots") or ()
    zero = int(options.get("zero_shot_text_demos") or 0)
    return max((int(k) if int(k) > 0 else zero for k in shots), default=0) + 1


class _Draws:
    """One seed's longest draw per query: row r = the query ``context.queries[r]``, filled on first use."""

    def __init__(self, context: SamplerContext, pool_size: int, width: int) -> None:
        rows = context.memo.get("random:rows")
        if rows is None or len(rows) != len(context.queries):
            rows = context.memo["random:rows"] = {s.id: r for r, s in enumerate(context.queries)}
        self.row: dict[str, int] = rows
        self.width = min(width, pool_size)
        self.code = "H" if pool_size < 1 << 16 else "I"  # pool indices: 2 bytes each for the protocol's 2,048
        self.table = array(self.code, bytes(array(self.code).itemsize * self.width * len(context.queries)))
        self.done = bytearray(len(context.queries))

    def get(self, sampler: RandomSampler, sample: Sample, n: int) -> list[int] | None:
        """The first ``n`` indices of ``sample``'s draw, or None when it is not memoised (another query, or
        n beyond the run's longest draw)."""
        r = self.row.get(sample.id)
        if r is None or n > self.width and self.width < len(sampler.pool):
            return None
        start = r * self.width
        if not self.done[r]:
            rng = keyed_rng(*sampler.keys, "random", sample.id)
            self.table[start:start + self.width] = array(self.code, prefix_shuffle(rng, len(sampler.pool), self.width))
            self.done[r] = 1
        return self.table[start:start + min(n, self.width)].tolist()


class FixedSampler:
    """The same demos for every query."""

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int,
                 context: SamplerContext | None = None) -> None:
        self.pool, self.keys = pool, (benchmark, split, seed)
        self.orders: dict[int, list[int]] = {}

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        if k + 1 not in self.orders:  # the same draw for every query: made once per k
            self.orders[k + 1] = prefix_shuffle(keyed_rng(*self.keys, "fixed"), len(self.pool), k + 1)
        order = self.orders[k + 1]
        return [self.pool[i] for i in order if self.pool[i].id != sample.id][:k]


class ClassBalancedSampler:
    """Classification demos spread over the classes: round-robin over a keyed class order.

    Round r takes, for each class in turn, the r-th example of a keyed shuffle of that class (the query
    itself skipped), so k demos cover min(k, #classes) classes and the k-list is a prefix of longer ones.
    """

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int,
                 context: SamplerContext | None = None) -> None:
        self.keys = (benchmark, split, seed)
        self.by_label: dict[int, list[Sample]] = {}
        for s in pool:
            if s.label is None:
                raise UserError(f"sampler class_balanced needs labelled samples; {s.id} has no label "
                                "(use it for classification benchmarks)")
            self.by_label.setdefault(s.label, []).append(s)
        self.largest = max((len(v) for v in self.by_label.values()), default=0)

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        labels = sorted(self.by_label)
        keyed_rng(*self.keys, "balanced", sample.id).shuffle(labels)
        orders: dict[int, list[int]] = {}
        out: list[Sample] = []
        for rnd in range(self.largest):
            for lab in labels:
                members = self.by_label[lab]
                if len(out) == k:
                    return out
                if rnd >= len(members):
                    continue
                if lab not in orders:
                    orders[lab] = prefix_shuffle(keyed_rng(*self.keys, "balanced", sample.id, lab),
                                                 len(members), len(members))
                cand = members[orders[lab][rnd]]
                if cand.id != sample.id:
                    out.append(cand)
        return out[:k]


SAMPLERS.register("random")(RandomSampler)
SAMPLERS.register("fixed")(FixedSampler)
SAMPLERS.register("class_balanced")(ClassBalancedSampler)
