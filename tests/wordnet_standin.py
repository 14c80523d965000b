"""A small WordNet stand-in for WUPS tests (nltk's WordNet data does not ship on PyPI).

A toy noun taxonomy with NLTK's Wu-Palmer convention: ``wup(a, b) = 2 * depth(lcs) / (depth(a) + depth(b))``,
where a node's depth counts the nodes on its path from the root, the root included (``entity`` has depth 1)::

    entity(1) ── animal(2) ── dog(3) ── puppy(4)
             │            └─ cat(3)
             └─ artifact(2) ── toy(3) ── ball(4)
                           └─ tool(3)

So wup(dog, cat) = 2*2/(3+3) = 2/3; wup(dog, puppy) = 2*3/(3+4) = 6/7; wup(ball, toy) = 6/7;
wup(dog, ball) = 2*1/(3+4) = 2/7; wup(puppy, ball) = 2/8 = 1/4. Every word has exactly one synset (itself).
Tokens are whitespace-separated; tags are ``NNS`` for words ending in ``s`` else ``NN``; the lemma of a noun
drops a final ``s`` when the rest is a known word; the Porter stem drops a final ``ing``.
"""

from __future__ import annotations

PARENT = {"animal": "entity", "artifact": "entity", "dog": "animal", "cat": "animal", "puppy": "dog",
          "toy": "artifact", "tool": "artifact", "ball": "toy"}
OTHER_WORDS = {"run", "yes", "no", "two", "three", "boy", "hold"}
"""Words WordNet 'knows' outside the taxonomy (wup to anything else: undefined -> 0)."""


def _path(word: str) -> list[str]:
    out = [word]
    while out[-1] in PARENT:
        out.append(PARENT[out[-1]])
    return out[::-1]


class StandInWordNet:
    """Implements ``flamingo_eval.metrics.wups.WordNetBackend`` over the toy taxonomy."""

    def tag(self, text: str) -> list[tuple[str, str]]:
        return [(t, "NNS" if t.endswith("s") else "NN") for t in text.split()]

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def lemma(self, word: str, pos: str | None) -> str:
        if word.endswith("s") and self.has_synsets(word[:-1]):
            return word[:-1]
        return word

    def stem(self, word: str) -> str:
        return word[:-3] if word.endswith("ing") else word

    def has_synsets(self, word: str) -> bool:
        return word in PARENT or word == "entity" or word in OTHER_WORDS

    def first_wup(self, a: str, b: str) -> float | None:
        if a in OTHER_WORDS or b in OTHER_WORDS:
            return None
        pa, pb = _path(a), _path(b)
        common = sum(1 for x, y in zip(pa, pb) if x == y)
        return 2 * common / (len(pa) + len(pb))
