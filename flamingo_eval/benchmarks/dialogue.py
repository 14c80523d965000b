"""Visual dialogue adapter: VisDial v1.0 (Das et al. 2017).

``visdial_1.0_<split>.json`` = ``{split, data: {questions: [str], answers: [str], dialogs: [{image_id,
caption, dialog: [{question, answer, answer_options: [100 idx], gt_index}]}]}}`` where question/answer are
indices into the string tables. One ``Sample`` per (dialog, round): id ``<image_id>-<round>`` (round
1-based), fields ``caption``, ``history`` (the earlier rounds, formatted with
``adapter_args.history_format``) and ``question``; ``references[0]`` is the ground-truth answer (the demo
answer) and ``label`` its option index. In the eval split each sample also carries ``candidates`` (the 100
option strings, ranked by the runner) and, for rounds in the dense annotation file, ``gt_relevance``
(100 floats, used for NDCG). Images: ``<split>_images/`` + ``adapter_args.image_patterns[split]``
(e.g. ``VisualDialog_val2018_{image_id:012d}.jpg``); a split without a pattern (train: COCO train2014 and
val2014 images mixed) is indexed by the number at the end of each file name under that folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import (
    Adapter,
    check_unique,
    is_number,
    need_field,
    need_int,
    need_list,
    read_json,
)
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample

HISTORY_FORMAT = "Question: {question}? Answer: {answer}. "
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _get(obj: Any, key: str, path: Path) -> Any:
    return need_field(obj, key, path, "an entry", "the official VisDial v1.0 file")


def _strings(obj: Any, key: str, path: Path) -> list[str]:
    values = need_list(obj, key, path, "data")
    if not all(isinstance(v, str) for v in values):
        raise UserError(f"{path}: data.{key} must be a list of strings")
    return values


def _pick(table: list[str], index: Any, path: Path, where: str, name: str) -> str:
    """``table[index]`` for a valid index; negative or non-integer indices are errors, not wrap-arounds."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(table):
        raise UserError(f"{path}: {where}: {name} {index!r} points outside the {len(table)}-entry string table")
    return table[index]


@ADAPTERS.register("visdial")
class VisDialAdapter(Adapter):
    """VisDial v1.0 dialogs -> one ranked sample per round."""

    metric_fields = ("gt_relevance",)  # dense relevance of the 100 options: NDCG (metrics/ranking.py)

    @dataclass
    class Args:
        """``adapter_args`` of ``visdial``."""

        history_format: str = HISTORY_FORMAT
        """How one past round is written into the dialogue history."""
        image_patterns: dict[str, str] = field(default_factory=dict)
        """Split -> image file name pattern (``{image_id}``); splits without one index the image folder."""

    args: Args

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_dialogs", f"{split}_images", f"{split}_dense"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def _relevance(self, split: str) -> dict[tuple[int, int], list[float]]:
        if f"{split}_dense" not in self.card.files:
            return {}
        path = self.path(f"{split}_dense")
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of {{image_id, round_id, gt_relevance}} objects")
        out = {}
        for i, r in enumerate(rows):
            what = f"entry {i}"
            relevance = need_list(r, "gt_relevance", path, what)
            if not all(is_number(x) for x in relevance):
                raise UserError(f"{path}: {what}: gt_relevance must be a list of numbers")
            key = (need_int(r, "image_id", path, what), need_int(r, "round_id", path, what))
            out[key] = [float(x) for x in relevance]
        return out

    def image_lookup(self, split: str) -> Any:
        """image_id -> path: from the split's pattern, else an index of the image folder by trailing id."""
        images = self.path(f"{split}_images")
        pattern = self.args.image_patterns.get(split)
        if pattern:
            return lambda image_id: images / str(pattern).format(image_id=image_id)
        index: dict[int, Path] = {}
        for f in images.rglob("*"):
            tail = f.stem.rsplit("_", 1)[-1]
            if f.suffix.lower() in IMAGE_SUFFIXES and tail.isdigit():
                index.setdefault(int(tail), f)

        def find(image_id: int) -> Path:
            if image_id not in index:
                raise UserError(f"VisDial image {image_id} not found under {images} (looked for *_{image_id:012d}.jpg)")
            return index[image_id]

        return find

    def load(self, split: str) -> list[Sample]:
        path = self.path(f"{split}_dialogs")
        data = _get(read_json(path), "data", path)
        questions, answers = _strings(data, "questions", path), _strings(data, "answers", path)
        fmt = self.args.history_format
        with_options = split == self.card.eval_split
        relevance = self._relevance(split) if with_options else {}
        image_of = self.image_lookup(split)
        samples = []
        for d, dlg in enumerate(need_list(data, "dialogs", path, "data")):
            image_id = need_int(dlg, "image_id", path, f"dialog {d}")
            caption = _get(dlg, "caption", path)
            if not isinstance(caption, str):
                raise UserError(f"{path}: dialog {image_id}: caption must be a string, got {caption!r:.40}")
            media = (str(image_of(image_id)),)
            history = ""
            for r, turn in enumerate(need_list(dlg, "dialog", path, f"dialog {image_id}"), 1):
                where = f"dialog {image_id} round {r}"
                q = _pick(questions, _get(turn, "question", path), path, where, "question")
                a = _pick(answers, _get(turn, "answer", path), path, where, "answer")
                fields: dict[str, Any] = {"caption": caption, "history": history, "question": q}
                label = turn.get("gt_index")
                if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
                    raise UserError(f"{path}: {where}: gt_index must be an integer, got {label!r:.40}")
                if with_options:
                    options = need_list(turn, "answer_options", path, where)
                    fields["candidates"] = tuple(_pick(answers, i, path, where, "answer option") for i in options)
                    if (image_id, r) in relevance:
                        fields["gt_relevance"] = relevance[(image_id, r)]
                samples.append(Sample(id=f"{image_id}-{r}", media=media, fields=fields, references=(a,),
                                      label=label))
                history += fmt.format(question=q, answer=a)
        return check_unique(samples, str(path))
