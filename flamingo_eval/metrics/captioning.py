"""Captioning metrics via pycocoevalcap 1.2: CIDEr-D (headline), optional BLEU-4, METEOR, ROUGE-L.

Both sides are PTB-tokenised (Stanford CoreNLP's PTBTokenizer, a Java jar shipped with pycocoevalcap),
then the scorers are called directly. ``COCOEvalCap.evaluate()`` is never used: it builds SPICE, which
downloads CoreNLP models and fails offline (SPICE is therefore not available).

CIDEr-D's IDF comes from the references of the images being scored, so a subset scores differently and a
single image always scores 0. Items are keyed by position, so repeated images (bootstrap resamples) are
scored as separate entries. All values are x100.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.registry import METRICS

EXTRAS = ("bleu4", "meteor", "rouge_l")


def _require_java() -> None:
    if shutil.which("java") is None:
        raise UserError(
            "captioning metrics need Java (pycocoevalcap runs the PTB tokenizer and METEOR as jars); "
            "install a JRE, e.g. apt-get install default-jre-headless"
        )


class PtbTokenizer:
    """PTB tokenisation with a memo, so repeated texts (bootstrap resamples) are tokenised once."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def __call__(self, texts: Iterable[str]) -> list[str]:
        """Tokenise ``texts`` (lower-cased, punctuation removed); blank texts give ''."""
        texts = list(texts)
        todo = sorted({t for t in texts if t not in self._memo and t.strip()})
        if todo:
            _require_java()
            from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

            # Blank lines are never sent: the jar's output is aligned with its input line by line.
            captions = {i: [{"caption": t.replace("\r", " ")}] for i, t in enumerate(todo)}
            tokenized = PTBTokenizer().tokenize(captions)
            for i, text in enumerate(todo):
                self._memo[text] = tokenized[i][0]
        return [self._memo.get(t, "") for t in texts]


def _score_cider(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float, list[float]]:
    from pycocoevalcap.cider.cider import Cider

    score, per_image = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in per_image]


def _score_extra(name: str, gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    if name == "bleu4":
        from pycocoevalcap.bleu.bleu import Bleu

        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
        return float(scores[3])
    if name == "rouge_l":
        from pycocoevalcap.rouge.rouge import Rouge

        score, _ = Rouge().compute_score(gts, res)
        return float(score)
    _require_java()
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()  # a Java subprocess; its __del__ stops it when the object goes away
    score, _ = meteor.compute_score(gts, res)
    del meteor
    return float(score)


def caption_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    extras: Sequence[str] = (),
    tokenizer: PtbTokenizer | None = None,
) -> tuple[float, list[float], dict[str, float]]:
    """Score captions against references (raw, untokenised text on both sides).

    Args:
        predictions: One caption per image.
        references: The reference captions of each image (at least one each).
        extras: Any of ``bleu4``, ``meteor``, ``rouge_l``.
        tokenizer: A (memoising) PTB tokenizer to reuse across calls.

    Returns:
        ``(cider, per_image_cider, extras)``, all x100.
    """
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return 0.0, [], {name: 0.0 for name in extras}
    for refs in references:
        if not refs:
            raise UserError("cider: an image has no reference captions; check the annotation file")
    tok = tokenizer or PtbTokenizer()
    flat_refs = [r for refs in references for r in refs]
    tokenized = tok([*predictions, *flat_refs])
    res = {i: [tokenized[i]] for i in range(len(predictions))}
    gts: dict[int, list[str]] = {}
    pos = len(predictions)
    for i, refs in enumerate(references):
        gts[i] = tokenized[pos : pos + len(refs)]
        pos += len(refs)
    cider, per_image = _score_cider(gts, res)
    extra_values = {name: 100.0 * _score_extra(name, gts, res) for name in extras}
    return 100.0 * cider, [100.0 * s for s in per_image], extra_values


class Cider:
    """The ``cider`` metric: corpus CIDEr-D x100, per-image CIDEr-D x100, optional extras."""

    name = "cider"
    corpus_level = True

    def __init__(self, extras: Sequence[str] = ()) -> None:
        """Create the metric.

        Args:
            extras: Which secondary metrics to add: ``bleu4``, ``meteor`` (slow-ish, Java), ``rouge_l``.
        """
        unknown = [e for e in extras if e not in EXTRAS]
        if unknown:
            raise UserError(f"cider: unknown extras {unknown}; choose from: {', '.join(EXTRAS)}")
        self.extras = tuple(extras)
        self._tokenizer = PtbTokenizer()

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        value, per_image, extras = caption_scores(
            [item.answer for item in items],
            [item.references for item in items],
            self.extras,
            self._tokenizer,
        )
        return MetricResult(value=value, per_sample=tuple(per_image), extras=extras)


@METRICS.register("cider")
def cider(extras: Sequence[str] = ()) -> Cider:
    """Factory for the ``cider`` metric (card arg: ``extras: [bleu4, meteor, rouge_l]``)."""
    return Cider(extras=extras)
