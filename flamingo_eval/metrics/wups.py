"""WUPS for NExT-QA open-ended answers, as NExT-OE's ``eval_oe.py`` computes it (docs/metrics.md, "WUPS").

Both the prediction and each reference are first *cleaned*: tokenised, POS-tagged, each token lower-cased
and lemmatised with WordNet for its part of speech (a token whose tag is not a noun, verb, adjective or
adverb tag is tagged again on its own, and taken as a noun if that fails too; the Porter stem when WordNet
knows the stem but not the lemma; the word itself when it knows neither), then NExT-OE's stop-words are
dropped (what ``eval_oe.py`` does through pywsd's ``lemmatize_sentence``). On the cleaned
strings:

* ``wup(a, b)`` is 1 for equal words, 0 when either has no WordNet synset, else the Wu-Palmer similarity of
  the two words' FIRST synsets, IN THIS ORDER, as the nltk that ``eval_oe.py`` pins (3.3) computes it
  (``wordnet_wup.py``: undefined, hence 0, when the first word's synset is an adjective or adverb, or a noun
  against another part of speech; metric arg ``variant: nltk36`` gives nltk >= 3.6's values instead),
  multiplied by 0.1 when it is below the threshold;
* ``wups(A, B)`` is the product over the words ``a`` of A of ``max_b wup(a, b)``, where words whose best
  match is 0 are left out of the product; 0 when every word was left out (or A is empty);
* the similarity of a prediction P to a reference R is ``min(wups(P, R), wups(R, P))``.

A question's score at a threshold is the best over its references (the csv answer and, when the release has
one, the second reference answer from ``add_reference_answer_<split>.json`` -- BOTH at that same threshold:
one popular harness scores the second reference at threshold 0 even for WUPS@0.9, which inflates it). For
the types ``DB`` (binary) and ``DC`` (counting) the score is an exact match of the cleaned strings at every
threshold. ``TP`` questions count as ``TN``. WUPS@0 and WUPS@0.9 are the means over questions (x100),
overall and per question type.

WordNet, the tokeniser and the tagger come from nltk data, which does not ship on PyPI: without it the metric
stops at start with one line saying how to get it. Tests use a small stand-in (``WordNetBackend``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.metrics.wordnet_wup import VARIANTS, WuPalmer
from flamingo_eval.registry import METRICS

__all__ = ["NltkWordNet", "Wups", "WordNetBackend", "clean", "wup", "wups", "wups_pair"]

INSTALL_HINT = ("python -m nltk.downloader wordnet omw-1.4 punkt_tab averaged_perceptron_tagger_eng "
                "(or set NLTK_DATA to a folder holding them)")
EXACT_TYPES = ("DB", "DC")
"""NExT-OE question types scored by exact match of the cleaned answers (binary, counting)."""
TYPE_ALIASES = {"TP": "TN"}
"""NExT-OE merges 'previous' (TP) into 'next' (TN) temporal questions."""


class WordNetBackend(Protocol):
    """What WUPS needs from WordNet and nltk (``NltkWordNet``; tests pass a small stand-in)."""

    def tag(self, text: str) -> list[tuple[str, str]]:
        """Tokens of ``text`` with Penn Treebank tags."""

    def tokenize(self, text: str) -> list[str]:
        """Word tokens of ``text``."""

    def lemma(self, word: str, pos: str | None) -> str:
        """WordNet's lemma of a lower-cased word for a WordNet POS (``n v a r``; None: noun)."""

    def stem(self, word: str) -> str:
        """The Porter stem of a lower-cased word."""

    def has_synsets(self, word: str) -> bool:
        """Whether WordNet knows the word (any POS)."""

    def first_synset(self, word: str) -> str | None:
        """The name of the word's first WordNet synset (nouns first, then verbs, adjectives, adverbs)."""

    def synset_pos(self, synset: str) -> str:
        """The synset's part of speech (``n v a s r``)."""

    def hypernyms(self, synset: str) -> list[str]:
        """Names of the synset's hypernyms, then of its instance hypernyms."""


class NltkWordNet:
    """The real backend: nltk's tokeniser, tagger, WordNet lemmatiser, Porter stemmer and WordNet."""

    def __init__(self) -> None:
        import nltk

        missing = []
        for path in ("corpora/wordnet", "tokenizers/punkt_tab/english/", "taggers/averaged_perceptron_tagger_eng/"):
            try:
                nltk.data.find(path)
            except LookupError:
                missing.append(path.split("/")[1])
        if missing:
            raise UserError(f"WUPS needs nltk data {', '.join(missing)} (not on PyPI); get it with: {INSTALL_HINT}")
        from nltk.corpus import wordnet
        from nltk.stem import PorterStemmer, WordNetLemmatizer

        self._wn, self._lemmatizer, self._stemmer = wordnet, WordNetLemmatizer(), PorterStemmer()
        self._named: dict[str, Any] = {}

    def tag(self, text: str) -> list[tuple[str, str]]:
        import nltk

        return list(nltk.pos_tag(nltk.word_tokenize(text)))

    def tokenize(self, text: str) -> list[str]:
        import nltk

        return list(nltk.word_tokenize(text))

    def lemma(self, word: str, pos: str | None) -> str:
        return str(self._lemmatizer.lemmatize(word, pos=pos or "n"))

    def stem(self, word: str) -> str:
        return str(self._stemmer.stem(word))

    def has_synsets(self, word: str) -> bool:
        return bool(self._wn.synsets(word))

    def first_synset(self, word: str) -> str | None:
        found = self._wn.synsets(word)
        if not found:
            return None
        self._named.setdefault(found[0].name(), found[0])
        return str(found[0].name())

    def synset_pos(self, synset: str) -> str:
        return str(self._synset(synset).pos())

    def hypernyms(self, synset: str) -> list[str]:
        s = self._synset(synset)
        out = []
        for h in s.hypernyms() + s.instance_hypernyms():
            self._named.setdefault(h.name(), h)
            out.append(str(h.name()))
        return out

    def _synset(self, name: str) -> Any:
        if name not in self._named:
            self._named[name] = self._wn.synset(name)
        return self._named[name]


def _morphy_pos(penn: str) -> str | None:
    """Penn Treebank tag -> WordNet POS by its first two letters (NN n, VB v, JJ a, RB r), else None."""
    return {"NN": "n", "VB": "v", "JJ": "a", "RB": "r"}.get(penn[:2])


def clean(text: str, wn: WordNetBackend, stopwords: frozenset[str]) -> str:
    """Lemmatise ``text`` word by word and drop stop-words (the module docstring's cleaning)."""
    words = []
    for token, penn in wn.tag(text):
        word = token.lower()
        pos = _morphy_pos(penn)
        if pos is None:  # a tag outside N/V/J/R: the word is tagged again on its own, noun by default
            pos = _morphy_pos(wn.tag(word)[0][1]) if word else None
        lemma = wn.lemma(word, pos or "n")
        if not wn.has_synsets(lemma):
            stem = wn.stem(word)
            lemma = stem if wn.has_synsets(stem) else word
        if lemma not in stopwords:
            words.append(lemma)
    return " ".join(words)


def wup(a: str, b: str, threshold: float, wn: WordNetBackend, wp: WuPalmer | None = None) -> float:
    """Thresholded Wu-Palmer similarity of word ``a`` to word ``b`` (module docstring; not symmetric).

    Args:
        wp: the Wu-Palmer computation (its variant and caches); default: the official variant on ``wn``.
    """
    if a == b:
        return 1.0
    sa, sb = wn.first_synset(a), wn.first_synset(b)
    if sa is None or sb is None:
        return 0.0
    sim = (wp or WuPalmer(wn)).similarity(sa, sb) or 0.0
    return 0.1 * sim if sim < threshold else sim


def wups(words_a: Sequence[str], words_b: Sequence[str], threshold: float, wn: WordNetBackend,
         wp: WuPalmer | None = None) -> float:
    """Product over ``words_a`` of each word's best match in ``words_b``; zero matches are left out."""
    wp = wp or WuPalmer(wn)
    product, used = 1.0, False
    for a in words_a:
        best = max((wup(a, b, threshold, wn, wp) for b in words_b), default=0.0)
        if best > 0:
            product *= best
            used = True
    return product if used else 0.0


def wups_pair(pred: str, ref: str, threshold: float, wn: WordNetBackend, wp: WuPalmer | None = None) -> float:
    """``min(wups(P, R), wups(R, P))`` on the tokens of two cleaned strings."""
    wp = wp or WuPalmer(wn)
    p, r = wn.tokenize(pred), wn.tokenize(ref)
    return min(wups(p, r, threshold, wn, wp), wups(r, p, threshold, wn, wp))


def _read_stopwords(path: str | None) -> frozenset[str]:
    if not path:
        raise UserError("WUPS needs NExT-OE's stopwords.txt (github.com/doc-doc/NExT-OE); pass "
                        "benchmarks.metric.args.stopwords_file=PATH")
    file = Path(path).expanduser()
    try:  # as eval_oe.py reads it: one word a line, only the line end removed (a trailing space stays)
        return frozenset(file.read_text(encoding="utf-8").split("\n"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the WUPS stop-word list {file} ({e}); get stopwords.txt from NExT-OE") from None


class Wups:
    """The ``wups`` metric: headline WUPS@0 (x100); extras WUPS@0.9 and both per question type."""

    name = "wups"
    corpus_level = False

    def __init__(self, stopwords_file: str | None = None, backend: WordNetBackend | None = None,
                 variant: str = "official") -> None:
        """Create the metric (checks the nltk data and reads the stop-words at start).

        Args:
            stopwords_file: NExT-OE's ``stopwords.txt`` (one word a line).
            backend: WordNet/nltk access; default :class:`NltkWordNet`.
            variant: ``official`` (Wu-Palmer as nltk 3.3, which ``eval_oe.py`` pins) or ``nltk36`` (as
                nltk >= 3.6 computes it).
        """
        if variant not in VARIANTS:
            raise UserError(f"wups: variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        self.stopwords = _read_stopwords(stopwords_file)
        self.wn = backend if backend is not None else NltkWordNet()
        self.wp = WuPalmer(self.wn, variant)

    def sample(self, item: MetricInput) -> tuple[float, float]:
        """(WUPS@0, WUPS@0.9) of one question, 0-1."""
        if not item.references:
            raise UserError(f"wups: sample '{item.sample_id}' has no reference answer")
        qtype = TYPE_ALIASES.get(str(item.extra.get("type", "")), str(item.extra.get("type", "")))
        pred = clean(item.answer, self.wn, self.stopwords)
        refs = [clean(r, self.wn, self.stopwords) for r in item.references[:2]]
        if qtype in EXACT_TYPES:
            hit = 1.0 if pred in refs else 0.0
            return hit, hit
        return (max(wups_pair(pred, r, 0.0, self.wn, self.wp) for r in refs),
                max(wups_pair(pred, r, 0.9, self.wn, self.wp) for r in refs))

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        pairs = [self.sample(item) for item in items]
        n = max(len(pairs), 1)
        extras: dict[str, float] = {"wups_0.9": 100.0 * sum(p[1] for p in pairs) / n}
        by_type: dict[str, list[tuple[float, float]]] = {}
        for item, p in zip(items, pairs):
            t = str(item.extra.get("type", ""))
            by_type.setdefault(TYPE_ALIASES.get(t, t), []).append(p)
        for t, ps in sorted(by_type.items()):
            if t:
                extras[f"wups_0_{t}"] = 100.0 * sum(p[0] for p in ps) / len(ps)
                extras[f"wups_0.9_{t}"] = 100.0 * sum(p[1] for p in ps) / len(ps)
        for group in "CTD":  # eval_oe.py's WUPS_C / WUPS_T / WUPS_D (causal, temporal, descriptive) at 0
            ps = [p for t, v in by_type.items() if t[:1] == group and len(t) == 2 for p in v]
            if ps:
                extras[f"wups_0_{group}"] = 100.0 * sum(p[0] for p in ps) / len(ps)
        per_sample = tuple(100.0 * p[0] for p in pairs)
        return MetricResult(value=sum(per_sample) / n, per_sample=per_sample, extras=extras)


@METRICS.register("wups")
def wups_metric(stopwords_file: str | None = None, variant: str = "official") -> Any:
    """Factory for the ``wups`` metric (card args: ``stopwords_file``, ``variant``: official | nltk36)."""
    return Wups(stopwords_file=stopwords_file, variant=variant)
