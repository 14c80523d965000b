"""VQA accuracy (Antol et al. 2015; VQAv2 evaluation) and exact match.

The official metric: normalise answers (punctuation, number words, articles, contractions), then for each
of the N annotator answers count how many of the OTHER N-1 answers equal the prediction, score
``min(1, matches / 3)``, and average over the N leave-one-out subsets.

Variants (they differ only in what is normalised):

- ``official``: the VQA evaluation at HEAD normalises both sides only when the answers are not all
  identical, so a prediction ``"Yes"`` against ten ``"yes"`` scores 0.
- ``openflamingo``: OpenFlamingo's port always normalises both sides (``"Yes"`` scores 100). Default, for
  parity with published OpenFlamingo numbers.
- ``vizwiz``: the VizWiz challenge's evaluation (a fork of the VQA code) always normalises the prediction
  and compares it with the annotator answers exactly as they are in the file (never normalised, not even
  stripped), so ``"coca cola"`` does not match ``"Coca-Cola"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.registry import METRICS

VARIANTS = ("official", "openflamingo", "vizwiz")

_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # noqa: E501  (one table line)
# Same pattern as the official evaluation; its "(?!<=\d)" is a (harmless) look-ahead typo, so any period
# not followed by a digit is removed.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
# The official code passes re.UNICODE (== 32) where ``count`` goes: at most 32 periods are stripped.
_PERIOD_COUNT = 32
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # noqa: E501  (one table line)
_ARTICLES = frozenset({"a", "an", "the"})
# Apostrophe-less spelling -> canonical spelling, as listed by the official evaluation.
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't
mightnt've mightn't've|mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've
neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at
'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll
someones someone's|somethingd something'd|somethingd've something'd've|something'dve something'd've
somethingll something'll|thats that's|thered there'd|thered've there'd've|there'dve there'd've
therere there're|theres there's|theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll
theyre they're|theyve they've|twas 'twas|wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've
werent weren't|whatll what'll|whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
_CONTRACTIONS = dict(
    pair.split() for line in _CONTRACTION_PAIRS.split("\n") for pair in line.split("|") if pair.strip()
)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    # The conditions look at the ORIGINAL text, as in the official evaluation.
    has_digit_comma = _DIGIT_COMMA.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        if has_digit_comma or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def _process_digits_articles(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """Normalise an answer the way the official VQA evaluation does.

    Args:
        answer: Raw answer text.

    Returns:
        The answer with newlines/tabs replaced, punctuation rules applied, lower-cased, number words
        (zero..ten, none) mapped to digits, articles dropped and contractions canonicalised.
    """
    return _process_digits_articles(_process_punctuation(_clean_whitespace(answer)))


def check_variant(variant: str) -> str:
    """Return ``variant`` if known, else raise UserError."""
    if variant not in VARIANTS:
        raise UserError(f"vqa_accuracy: unknown variant '{variant}'; use one of: {', '.join(VARIANTS)}")
    return variant


def vqa_score(prediction: str, answers: Sequence[str], variant: str = "openflamingo") -> float:
    """VQA accuracy of one prediction against its annotator answers, on a 0-100 scale.

    Args:
        prediction: The model's answer.
        answers: All annotator answers (10 for VQAv2; any number >= 1 works). Leave-one-out removes by
            index, so duplicate answers are kept.
        variant: ``openflamingo`` (always normalise both sides), ``official`` (raw comparison when
            unanimous) or ``vizwiz`` (normalise the prediction only).

    Returns:
        Mean over annotators i of ``min(1, #matches among the others / 3)``, times 100.
    """
    check_variant(variant)
    if not answers:
        raise UserError("vqa_accuracy: a question has no reference answers; check the annotation file")
    pred = _clean_whitespace(prediction)
    refs = [_clean_whitespace(a) for a in answers]
    if variant == "vizwiz":
        pred, refs = normalize_answer(pred), list(answers)
    elif variant == "openflamingo" or len(set(refs)) > 1:
        pred = normalize_answer(pred)
        refs = [normalize_answer(a) for a in refs]
    equal = [ref == pred for ref in refs]
    total = sum(equal)
    accs = [min(1.0, (total - int(eq)) / 3.0) for eq in equal]
    return 100.0 * sum(accs) / len(accs)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class VqaAccuracy:
    """The ``vqa_accuracy`` metric: per-question VQA accuracy, headline = mean (0-100)."""

    name = "vqa_accuracy"
    corpus_level = False

    def __init__(self, variant: str = "openflamingo", stem: bool = False) -> None:
        """Create the metric.

        Args:
            variant: ``openflamingo`` (default), ``official`` or ``vizwiz``; see the module docstring.
            stem: Apply OK-VQA stemming to predictions first (needs nltk data; see ``okvqa_stem``).
        """
        self.variant = check_variant(variant)
        self.stem = stem
        self._stemmer = None
        if stem:
            from flamingo_eval.metrics.okvqa_stem import OkvqaStemmer

            self._stemmer = OkvqaStemmer()

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        scores = []
        for item in items:
            answer = self._stemmer.stem(item.answer) if self._stemmer is not None else item.answer
            if not item.references:
                raise UserError(f"vqa_accuracy: sample '{item.sample_id}' has no reference answers")
            scores.append(vqa_score(answer, item.references, self.variant))
        return MetricResult(value=_mean(scores), per_sample=tuple(scores))


class ExactMatch:
    """The ``exact_match`` metric: 100 when the answer equals any reference, else 0."""

    name = "exact_match"
    corpus_level = False

    def __init__(self, normalize: bool = True) -> None:
        """Create the metric.

        Args:
            normalize: Apply VQA answer normalisation to both sides before comparing.
        """
        self.normalize = normalize

    def _norm(self, text: str) -> str:
        return normalize_answer(text) if self.normalize else text.strip()

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        scores = []
        for item in items:
            refs = {self._norm(r) for r in item.references}
            scores.append(100.0 if self._norm(item.answer) in refs else 0.0)
        return MetricResult(value=_mean(scores), per_sample=tuple(scores))


@METRICS.register("vqa_accuracy")
def vqa_accuracy(variant: str = "openflamingo", stem: bool = False) -> VqaAccuracy:
    """Factory for the ``vqa_accuracy`` metric (card args: ``variant``, ``stem``)."""
    return VqaAccuracy(variant=variant, stem=stem)


@METRICS.register("exact_match")
def exact_match(normalize: bool = True) -> ExactMatch:
    """Factory for the ``exact_match`` metric (card arg: ``normalize``)."""
    return ExactMatch(normalize=normalize)
