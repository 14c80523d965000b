"""WUPS as NExT-OE's eval_oe.py computes it under the nltk it pins (3.3), on held-out vectors.

The graph is tests/wordnet_standin.py (max depths in its docstring). Every expected value below is derived by
hand from nltk 3.3's ``Synset.wup_similarity`` (simulate_root=True), not from the code under test:

  need_root   = the FIRST synset is a verb (3.3: ``_needs_root`` is False for nouns, None -- falsy -- for
                adjectives and adverbs); nltk >= 3.6 (variant ``nltk36``): unless both are nouns.
  subsumers   = ancestors-or-self common to both (+ ``*ROOT*`` when need_root), keep those of greatest MIN
                depth (``*ROOT*``: 0), sort by name (``*ROOT*`` first); subsumer = the first synset if kept,
                else the first of the list. None when the list is empty.
  depth       = subsumer's MAX depth + 1 (``*ROOT*``: 1)
  len_i       = shortest distance from synset i to the subsumer + depth; a synset's distance to ``*ROOT*`` is
                (its farthest breadth-first ancestor distance) + 1
  wup         = 2 depth / (len_1 + len_2);  eval_oe.py scores None as 0, and scales a value below the
                threshold by 0.1.
"""

from __future__ import annotations

import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput
from flamingo_eval.metrics.wordnet_wup import WuPalmer
from flamingo_eval.metrics.wups import Wups, clean, wup, wups_pair
from tests.wordnet_standin import StandInWordNet

WN = StandInWordNet()
OFFICIAL, NLTK36 = WuPalmer(WN, "official"), WuPalmer(WN, "nltk36")


@pytest.mark.parametrize(
    "a,b,official,nltk36",
    [
        # adjectives, different synsets: 3.3 no root -> common {} -> None -> 0. 3.6: *ROOT*, depth 1,
        # len = (0 + 1) + 1 = 2 each -> 2/4
        ("happy", "sad", 0.0, 0.5),
        # synonyms share happy.a.01: subsumer = itself, depth 0 + 1 = 1, len 1 + 1 -> 1 in both
        ("joyful", "happy", 1.0, 1.0),
        ("quickly", "slowly", 0.0, 0.5),  # adverbs: as adjectives
        # verbs under one root: common {move} + *ROOT*, both min depth 0 -> sorted [*ROOT*, move.v.01], walk not
        # in it -> *ROOT*: depth 1, walk's farthest ancestor 1 -> len (1 + 1) + 1 = 3, run the same -> 2/6
        ("walk", "run", 1 / 3, 1 / 3),
        # the same pair the other way round: move IS in the list -> subsumer move, depth 1, len 0+1 and 1+1 -> 2/3
        ("move", "walk", 2 / 3, 2 / 3),
        # ... and walk first: *ROOT* again: len walk 3, move (0 + 1) + 1 = 2 -> 2/5 (not symmetric)
        ("walk", "move", 2 / 5, 2 / 5),
        # a deeper common verb: walk (min depth 1 beats 0): depth 1 + 1 = 2, len (1 + 2) and (0 + 2) -> 4/5
        ("march", "walk", 4 / 5, 4 / 5),
        # verbs of different roots: *ROOT* only: len (1+1)+1 = 3 each -> 2/6
        ("walk", "eat", 1 / 3, 1 / 3),
        # noun first vs verb: 3.3 no root, no common synset -> None -> 0. 3.6: *ROOT*: dog (2+1)+1 = 4,
        # run (1+1)+1 = 3 -> 2/7
        ("dog", "run", 0.0, 2 / 7),
        ("run", "dog", 2 / 7, 2 / 7),  # verb first: the root is simulated in 3.3 too
        ("walk", "happy", 2 / 5, 2 / 5),  # verb first vs adjective: walk 3, happy (0+1)+1 = 2 -> 2/5
        ("happy", "walk", 0.0, 2 / 5),  # adjective first: None in 3.3
        # adjective 'on' vs noun 'sofa' (max depth 9): 3.6: on (0+1)+1 = 2, sofa (9+1)+1 = 11 -> 2/13 = 0.154
        ("on", "sofa", 0.0, 2 / 13),
        ("sofa", "on", 0.0, 2 / 13),
        # two hypernyms: whelp vs hound: common with the greatest min depth (3): hound and hunter -> sorted,
        # hound first; depth = hound's MAX depth (4, via hunter) + 1 = 5; len 1 + 5 and 0 + 5 -> 10/11
        ("whelp", "hound", 10 / 11, 10 / 11),
        # hound vs puppy: common {dog, animal, entity} -> dog (min depth 2): depth 3, len 1 + 3 each -> 6/8
        ("hound", "puppy", 3 / 4, 3 / 4),
        # nouns in one tree need no root: dog vs sofa -> entity: depth 1, len (2+1) and (9+1) -> 2/13
        ("dog", "sofa", 2 / 13, 2 / 13),
    ],
)
def test_word_similarity_official_and_nltk36(a, b, official, nltk36):
    assert wup(a, b, 0.0, WN, OFFICIAL) == pytest.approx(official, abs=1e-12)
    assert wup(a, b, 0.0, WN, NLTK36) == pytest.approx(nltk36, abs=1e-12)


def test_official_is_the_default_and_threshold_scales():
    assert wup("happy", "sad", 0.0, WN) == 0.0  # no WuPalmer given: the official variant
    assert wup("march", "walk", 0.9, WN) == pytest.approx(0.1 * 4 / 5)  # 0.8 < 0.9: scaled by 0.1
    assert wup("whelp", "hound", 0.9, WN) == pytest.approx(10 / 11)  # 0.909 >= 0.9: kept
    with pytest.raises(ValueError, match="official, nltk36"):
        WuPalmer(WN, "nltk3.3")


@pytest.mark.parametrize(
    "pred,ref,threshold,official,nltk36",
    [
        # cleaned strings (space-separated lemmas). 'on sofa' vs 'sofa': P->R: on -> 0 in 3.3 (left out), sofa 1
        # -> 1; R->P: sofa max(wup(sofa, on) = 0, 1) = 1 -> min 1. 3.6: P->R on 2/13 * sofa 1 -> 2/13.
        ("on sofa", "sofa", 0.0, 1.0, 2 / 13),
        # adjective + noun: 3.3 happy left out -> 1. 3.6: wup(happy, dog): happy 2, dog (2+1)+1 = 4 -> 2/6
        ("happy dog", "dog", 0.0, 1.0, 1 / 3),
        # noun + verb vs verb: P->R dog: wup(dog, run) 0 (3.3) -> left out, run 1 -> 1; R->P run: max(2/7, 1)
        # -> 1. 3.6: P->R 2/7 * 1 -> 2/7
        ("dog run", "run", 0.0, 1.0, 2 / 7),
        # single verb vs noun: P->R wup(run, dog) = 2/7; R->P wup(dog, run) = 0 in 3.3 -> nothing matched -> 0
        ("run", "dog", 0.0, 0.0, 2 / 7),
        # asymmetric verbs: P->R wup(walk, move) = 2/5, R->P wup(move, walk) = 2/3 -> 2/5; at 0.9 both scaled
        ("walk", "move", 0.0, 2 / 5, 2 / 5),
        ("walk", "move", 0.9, 0.04, 0.04),
        # adverbs: 0 in 3.3; 0.5 (0.05 below 0.9) in 3.6
        ("quickly", "slowly", 0.0, 0.0, 0.5),
        ("quickly", "slowly", 0.9, 0.0, 0.05),
        # multi-word: P->R: dog 1 * walk's best = wup(walk, dog) (verb first: *ROOT* in both variants: walk
        # (1+1)+1 = 3, dog (2+1)+1 = 4 -> 2/7); R->P: dog max(wup(dog, dog) = 1, ...) = 1 -> min 2/7
        ("dog walk", "dog", 0.0, 2 / 7, 2 / 7),
        # empty strings: no word -> 0 (eval_oe.py's wups() returns 0 when nothing matched), even for '' vs ''
        ("", "dog", 0.0, 0.0, 0.0),
        ("", "", 0.0, 0.0, 0.0),
    ],
)
def test_answer_similarity_official_and_nltk36(pred, ref, threshold, official, nltk36):
    assert wups_pair(pred, ref, threshold, WN, OFFICIAL) == pytest.approx(official, abs=1e-12)
    assert wups_pair(pred, ref, threshold, WN, NLTK36) == pytest.approx(nltk36, abs=1e-12)


@pytest.mark.parametrize(
    "text,expected",
    [
        # The: DT -> tagged again alone, DT -> noun; 'the' unknown, its stem too -> 'the' -> stop-word, dropped.
        # walked: VBD -> verb lemma walk; quickly: RB -> kept (an adverb WordNet knows)
        ("The dog walked quickly", "dog walk quickly"),
        ("on the sofa", "on sofa"),  # on: IN -> noun; WordNet knows 'on' (an adjective) -> kept
        ("Happy Dogs running", "happy dog run"),  # lower-cased; NNS lemma; VBG -> verb lemma
        ("the", ""),  # only a stop-word
        ("", ""),
    ],
)
def test_clean_vectors(text, expected):
    assert clean(text, WN, frozenset({"the", "a"})) == expected


def _metric(tmp_path, stop: str = "the\na\n", variant: str = "official") -> Wups:
    path = tmp_path / "stopwords.txt"
    path.write_text(stop)
    return Wups(stopwords_file=str(path), backend=WN, variant=variant)


def test_metric_official_vs_nltk36(tmp_path):
    items = [
        MetricInput("q1", "on the sofa", ("sofa",), extra={"type": "DL"}),  # 1 | 2/13 (vectors above)
        MetricInput("q2", "happy dog", ("dog", "cat"), extra={"type": "CW"}),  # max(1, ...) = 1 | max(1/3, x)
        MetricInput("q3", "", ("dog",), extra={"type": "TC"}),  # empty prediction: 0
        MetricInput("q4", "the", ("",), extra={"type": "DB"}),  # DB: exact match of cleaned '' == '' -> 1
    ]
    official = _metric(tmp_path)(items)
    # q2 in 3.6: vs 'cat': P->R happy 2/6 * dog max(wup(dog, cat) = 2/3) -> 2/9 < 1/3 -> best 1/3
    assert official.per_sample == pytest.approx([100.0, 100.0, 0.0, 100.0])
    assert official.value == pytest.approx(75.0)
    new = _metric(tmp_path, variant="nltk36")(items)
    assert new.per_sample == pytest.approx([100 * 2 / 13, 100 / 3, 0.0, 100.0])
    assert new.extras["wups_0_D"] == pytest.approx(100 * (2 / 13 + 1) / 2)  # pooled over D questions
    with pytest.raises(UserError, match="official, nltk36"):
        _metric(tmp_path, variant="nltk33")


def test_stopwords_are_read_as_eval_oe_reads_them(tmp_path):
    # eval_oe.py strips only the line end: "the " (trailing space) is not the stop-word "the", CRLF ends are
    # line ends (text mode). "the dog" vs "dog": with 'the' kept the cleaned strings are "the dog" / "dog",
    # and 'the' has no synset -> left out -> 1 either way, so the check is on the cleaned string itself.
    assert _metric(tmp_path, "the \na\n").stopwords == frozenset({"the ", "a", ""})
    assert clean("the dog", WN, _metric(tmp_path, "the \n").stopwords) == "the dog"
    assert clean("the dog", WN, _metric(tmp_path, "the\r\na\r\n").stopwords) == "dog"


def _nltk_synsets(needs_root):
    """The stand-in graph as nltk ``Synset`` objects whose ``_needs_root`` is ``needs_root(pos)``."""
    from nltk.corpus.reader.wordnet import Synset

    class Reader:
        def get_version(self):
            return "3.0"

    names, todo = set(), [WN.first_synset(w) for w in WORDS]
    while todo:  # every synset and its ancestors
        names.add(todo[-1])
        todo.extend(h for h in WN.hypernyms(todo.pop()) if h not in names)
    made = {}
    for name in names:
        s = made[name] = Synset(Reader())
        s._name, s._pos = name, WN.synset_pos(name)
        s._needs_root = lambda pos=s._pos: needs_root(pos)
        s._related = lambda sym, sort=True, n=name: [made[h] for h in WN.hypernyms(n)] if sym == "@" else []
    return made


WORDS = ["dog", "cat", "puppy", "hound", "whelp", "hunter", "worker", "sofa", "seat", "ball", "entity", "walk",
         "march", "move", "run", "eat", "consume", "hold", "happy", "joyful", "sad", "on", "quickly", "slowly"]


def test_wu_palmer_equals_nltk_code_on_the_stand_in_graph():
    """Cross-check with nltk's own Synset code run on the stand-in graph (the hand vectors above are the spec).

    The installed nltk (>= 3.6) decides the root by ``self._needs_root() or other._needs_root()``; nltk 3.3's
    rule (first synset only, verbs only) is had by giving the first synset 3.3's ``_needs_root`` and the second
    one that is always False: the rest of ``wup_similarity`` (subsumers, depths, distances) is the same code
    in 3.3 and now.
    """
    current = _nltk_synsets(lambda pos: pos != "n")
    first33, second33 = _nltk_synsets(lambda pos: pos == "v"), _nltk_synsets(lambda pos: False)
    for a in WORDS:
        for b in WORDS:
            sa, sb = WN.first_synset(a), WN.first_synset(b)
            assert NLTK36.similarity(sa, sb) == current[sa].wup_similarity(current[sb]), (a, b)
            assert OFFICIAL.similarity(sa, sb) == first33[sa].wup_similarity(second33[sb]), (a, b)
