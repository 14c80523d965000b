"""A small WordNet stand-in for WUPS tests (nltk's WordNet data does not ship on PyPI).

Every word has one synset, named ``word.<pos>.01`` (a synonym shares another word's synset), in a hand-built
graph with WordNet's shape: one noun tree under ``entity``, several verb trees (``move``, ``consume``,
``hold``), adjectives and adverbs without hypernyms. The max depth (edges on the longest path up to a root)
of each noun is in brackets::

    entity(0) ── animal(1) ── dog(2) ── puppy(3)
             │            │        └─ hound(4) ── whelp(5)     hound has TWO hypernyms: dog and hunter,
             │            └─ cat(2)                             so its min depth is 3 and its max depth 4
             ├─ artifact(1) ── toy(2) ── ball(3)
             │              └─ tool(2)
             ├─ agent(1) ── worker(2) ── hunter(3) ── hound
             ├─ physical(1) ── object(2) ── whole(3) ── structure(4) ── fixture(5) ── furnishing(6)
             │      ── furniture(7) ── seat(8) ── sofa(9)
             └─ yes, no, two, three, boy (1)
    verbs:  move(0) ── walk(1) ── march(2);  move ── run(1);  consume(0) ── eat(1);  hold(0)
    adjectives: happy (joyful: the same synset), sad, on;  adverbs: quickly, slowly

The Wu-Palmer values that tests use are derived where they are used (tests/unit/test_video_metrics.py),
from nltk's rule: depth = subsumer's max depth + 1, len_i = shortest distance to the subsumer + depth,
wup = 2 depth / (len_1 + len_2). With one path up, e.g. wup(dog, cat) = 2*2/(3+3) = 2/3; wup(dog, puppy)
= 2*3/(3+4) = 6/7; wup(ball, toy) = 6/7; wup(dog, ball) = 2*1/(3+4) = 2/7; wup(puppy, ball) = 2/8 = 1/4.

Tokens are whitespace-separated. Tags: the word's entry in ``TAGS``, else ``NNS`` for a word ending in ``s``
and ``NN`` otherwise (a word is tagged the same alone as in a sentence). Lemmas: a noun drops a final ``s``
when the rest is a known word; a verb form in ``VERB_FORMS`` becomes its base; else the word. The Porter stem
drops a final ``ing``.
"""

from __future__ import annotations

NOUN_PARENTS = {
    "animal": ("entity",), "dog": ("animal",), "puppy": ("dog",), "cat": ("animal",),
    "hound": ("dog", "hunter"), "whelp": ("hound",),
    "artifact": ("entity",), "toy": ("artifact",), "ball": ("toy",), "tool": ("artifact",),
    "agent": ("entity",), "worker": ("agent",), "hunter": ("worker",),
    "physical": ("entity",), "object": ("physical",), "whole": ("object",), "structure": ("whole",),
    "fixture": ("structure",), "furnishing": ("fixture",), "furniture": ("furnishing",), "seat": ("furniture",),
    "sofa": ("seat",),
    "yes": ("entity",), "no": ("entity",), "two": ("entity",), "three": ("entity",), "boy": ("entity",),
}
VERB_PARENTS = {"move": (), "walk": ("move",), "march": ("walk",), "run": ("move",), "consume": (), "eat": ("consume",),
                "hold": ()}
ADJECTIVES = {"happy", "sad", "on"}
ADVERBS = {"quickly", "slowly"}
SYNONYMS = {"joyful": "happy.a.01"}
"""Words whose first synset is another word's."""
TAGS = {"the": "DT", "a": "DT", "on": "IN", "happy": "JJ", "sad": "JJ", "joyful": "JJ", "quickly": "RB",
        "slowly": "RB", "walked": "VBD", "running": "VBG", "run": "VB", "walk": "VB", "eat": "VB", "move": "VB",
        "march": "VB"}
VERB_FORMS = {"walked": "walk", "running": "run", "ate": "eat"}


def _first_synset(word: str) -> str | None:
    if word in SYNONYMS:
        return SYNONYMS[word]
    if word in NOUN_PARENTS or word == "entity":
        return f"{word}.n.01"
    if word in VERB_PARENTS:
        return f"{word}.v.01"
    if word in ADJECTIVES:
        return f"{word}.a.01"
    if word in ADVERBS:
        return f"{word}.r.01"
    return None


class StandInWordNet:
    """Implements ``flamingo_eval.metrics.wups.WordNetBackend`` over the hand-built graph."""

    def tag(self, text: str) -> list[tuple[str, str]]:
        return [(t, TAGS.get(t.lower(), "NNS" if t.endswith("s") else "NN")) for t in text.split()]

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def lemma(self, word: str, pos: str | None) -> str:
        if pos == "v":
            return VERB_FORMS.get(word, word)
        if pos in (None, "n") and word.endswith("s") and self.has_synsets(word[:-1]):
            return word[:-1]
        return word

    def stem(self, word: str) -> str:
        return word[:-3] if word.endswith("ing") else word

    def has_synsets(self, word: str) -> bool:
        return _first_synset(word) is not None

    def first_synset(self, word: str) -> str | None:
        return _first_synset(word)

    def synset_pos(self, synset: str) -> str:
        return synset.split(".")[1]

    def hypernyms(self, synset: str) -> list[str]:
        word, pos, _ = synset.split(".")
        parents = {"n": NOUN_PARENTS, "v": VERB_PARENTS}.get(pos, {}).get(word, ())
        return [f"{p}.{pos}.01" for p in parents]
