"""Wu-Palmer similarity on a WordNet synset graph, computed the way nltk computes it (docs/metrics.md, "WUPS").

The result depends on the nltk version, not only on WordNet: NExT-OE's ``eval_oe.py`` pins nltk 3.3, whose
``Synset.wup_similarity`` adds a simulated root above the separate taxonomies only when the FIRST synset is a
verb; nltk 3.6 and later add it unless both synsets are nouns. This module reimplements the algorithm on
plain synset names, so WUPS equals the pinned environment whatever nltk is installed:

* the common subsumers are the synsets that are ancestors-or-self of both (hypernyms and instance hypernyms);
  with the simulated root, ``*ROOT*`` joins them;
* the lowest common subsumers are those of greatest MIN depth (edges on the shortest path up to a synset
  without hypernyms; 0 for ``*ROOT*``), sorted by name -- ``*ROOT*`` sorts before every WordNet name; the
  subsumer is the first synset itself when it is among them, else the first of the sorted list;
* ``depth`` is the subsumer's MAX depth + 1 (``*ROOT*``: 1); ``len_i`` is the shortest distance (edges) from
  synset i up to the subsumer, plus ``depth``; with the simulated root, ``*ROOT*`` sits one edge above the
  farthest ancestor a breadth-first walk reaches; the similarity is ``2 * depth / (len_1 + len_2)``;
* no common subsumer (e.g. a noun, adjective or adverb first synset against a synset of another tree, with
  no simulated root): undefined (None).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["ROOT", "VARIANTS", "SynsetGraph", "WuPalmer"]

ROOT = "*ROOT*"
"""The simulated root's name (as nltk names it; it sorts before every WordNet synset name)."""
VARIANTS = ("official", "nltk36")
"""``official``: nltk <= 3.5 (NExT-OE pins 3.3): simulated root only when the first synset is a verb.
``nltk36``: nltk >= 3.6: simulated root unless both synsets are nouns."""


class SynsetGraph(Protocol):
    """The WordNet structure Wu-Palmer needs, by synset name (``dog.n.01``)."""

    def synset_pos(self, synset: str) -> str:
        """The synset's part of speech: ``n``, ``v``, ``a``, ``s`` (adjective satellite) or ``r``."""

    def hypernyms(self, synset: str) -> list[str]:
        """Its direct hypernyms followed by its direct instance hypernyms."""


class WuPalmer:
    """nltk's ``Synset.wup_similarity`` (``simulate_root=True``) for one variant, with per-synset caches."""

    def __init__(self, graph: SynsetGraph, variant: str = "official") -> None:
        """Bind a synset graph and a variant (one of :data:`VARIANTS`)."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        self.graph, self.variant = graph, variant
        self._up: dict[str, dict[str, int]] = {}
        self._min: dict[str, int] = {}
        self._max: dict[str, int] = {}

    def needs_root(self, first: str, second: str) -> bool:
        """Whether the simulated root joins the subsumers (WordNet 3.0: nouns share ``entity.n.01``)."""
        if self.variant == "official":
            return self.graph.synset_pos(first) == "v"
        return self.graph.synset_pos(first) != "n" or self.graph.synset_pos(second) != "n"

    def up(self, synset: str) -> dict[str, int]:
        """Shortest distance (edges) from ``synset`` to each ancestor-or-self, breadth first."""
        if synset not in self._up:
            dist: dict[str, int] = {}
            queue = deque([(synset, 0)])
            while queue:
                s, d = queue.popleft()
                if s not in dist:
                    dist[s] = d
                    queue.extend((h, d + 1) for h in self.graph.hypernyms(s))
            self._up[synset] = dist
        return self._up[synset]

    def _depth(self, synset: str, longest: bool) -> int:
        cache = self._max if longest else self._min
        if synset == ROOT:
            return 0
        if synset not in cache:
            ups = [self._depth(h, longest) for h in self.graph.hypernyms(synset)]
            cache[synset] = 1 + (max(ups) if longest else min(ups)) if ups else 0
        return cache[synset]

    def _distance(self, synset: str, subsumer: str, root: bool) -> int | None:
        """Shortest path length between ``synset`` and ``subsumer`` through a common ancestor."""
        if synset == subsumer:
            return 0
        mine = dict(self.up(synset))
        theirs = {ROOT: 0} if subsumer == ROOT else dict(self.up(subsumer))
        if root:
            mine[ROOT] = max(mine.values()) + 1
            if subsumer != ROOT:
                theirs[ROOT] = max(theirs.values()) + 1
        common = [mine[s] + theirs[s] for s in mine if s in theirs]
        return min(common) if common else None

    def similarity(self, first: str, second: str) -> float | None:
        """Wu-Palmer similarity of two synsets in this order (None when nltk returns None)."""
        root = self.needs_root(first, second)
        candidates = {s: self._depth(s, longest=False) for s in self.up(first) if s in self.up(second)}
        if root:
            candidates[ROOT] = 0
        if not candidates:
            return None
        lowest = max(candidates.values())
        subsumers = sorted(s for s, d in candidates.items() if d == lowest)
        subsumer = first if first in subsumers else subsumers[0]
        depth = self._depth(subsumer, longest=True) + 1
        len1, len2 = self._distance(first, subsumer, root), self._distance(second, subsumer, root)
        if len1 is None or len2 is None:
            return None
        return 2.0 * depth / (len1 + len2 + 2 * depth)
