"""Captioning metrics via pycocoevalcap 1.2: CIDEr-D (headline), optional BLEU-4, METEOR, ROUGE-L.

Both sides are PTB-tokenised (Stanford CoreNLP's PTBTokenizer, a Java jar shipped with pycocoevalcap),
then the scorers are called directly. Line-breaking characters inside a caption (``\u2028``, ``\x0b``, ...)
are tokenised as spaces and the jar's output is checked line for line, so one caption can never shift the
others onto the wrong image. ``COCOEvalCap.evaluate()`` is never used: it builds SPICE, which
downloads CoreNLP models and fails offline (SPICE is therefore not available).

CIDEr-D's IDF comes from the references of the images being scored, so a subset scores differently and a
single image always scores 0. Items are keyed by position, so repeated images (bootstrap resamples) are
scored as separate entries. All values are x100.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

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


# Characters that end a line for the PTB tokenizer (Java: \r, \x0b, \x0c, U+2028, U+2029 -- measured on
# the jar) or for Python's str.splitlines (adds \x1c-\x1e, \x85). One of them inside a caption splits it
# into two output lines and shifts every later caption of the batch onto the wrong image, so each becomes
# a space before tokenising -- on both sides, so a prediction and its references stay comparable.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAK_TO_SPACE = str.maketrans({c: " " for c in LINE_BREAKS})


def one_line(text: str) -> str:
    """``text`` with every line-breaking character (:data:`LINE_BREAKS`) replaced by a space."""
    return text.translate(_LINE_BREAK_TO_SPACE)


def run_ptb_jar(lines: Sequence[str]) -> list[str]:
    """Run pycocoevalcap's PTB tokenizer jar (``-preserveLines -lowerCase``) on single-line texts.

    The same jar and flags as ``pycocoevalcap.tokenizer.PTBTokenizer`` (so the tokens are identical), but
    the input goes to a private temporary file (the package's own wrapper writes into site-packages) and
    the output is checked to hold exactly one line per input line: a mismatch would silently score every
    later caption against another image's text, so it stops the run instead.

    Raises:
        RuntimeError: The jar failed or returned another number of lines than it was sent.
    """
    import os
    import subprocess
    import tempfile

    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    fd, tmp = tempfile.mkstemp(prefix="flamingo-eval-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write("\n".join(lines).encode("utf-8", "replace"))  # a lone surrogate becomes ?
        proc = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", tmp], capture_output=True, check=False)
    finally:
        os.unlink(tmp)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"PTB tokenizer (java) failed with exit code {proc.returncode}: {tail[0]}")
    out = proc.stdout.decode("utf-8").split("\n")
    if out and out[-1] == "" and len(out) == len(lines) + 1:
        out.pop()  # the jar ends its output with a newline
    if len(out) != len(lines):
        raise RuntimeError(f"PTB tokenizer returned {len(out)} lines for {len(lines)} captions; refusing to "
                           "score misaligned captions (a caption holds a line break the tokenizer honours)")
    punct = set(ptbtokenizer.PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punct) for line in out]


class PtbTokenizer:
    """PTB tokenisation with a memo, so repeated texts (bootstrap resamples) are tokenised once."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def __call__(self, texts: Iterable[str]) -> list[str]:
        """Tokenise ``texts`` (lower-cased, punctuation removed); blank texts give ''.

        Line-breaking characters inside a text are tokenised as spaces (see :data:`LINE_BREAKS`).
        """
        texts = list(texts)
        todo = sorted({t for t in texts if t not in self._memo})
        sent = [(t, one_line(t)) for t in todo]
        for text, line in sent:
            if not line.strip():
                self._memo[text] = ""  # blank lines are never sent: the jar would drop them
        sent = [(t, line) for t, line in sent if line.strip()]
        if sent:
            _require_java()
            for (text, _), tokens in zip(sent, run_ptb_jar([line for _, line in sent]), strict=True):
                self._memo[text] = tokens
        return [self._memo[t] for t in texts]


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
