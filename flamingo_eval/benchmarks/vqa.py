"""VQA-format adapters: VQAv2 / OK-VQA, TextVQA, VizWiz official files, and easy-vqa.

VQAv2 questions and annotations are joined by ``question_id`` (never by position). Sample ids are the
question ids; references are the annotator answers in file order (``answers[0]`` is the demo answer).
A split without an annotation file (VQAv2 test-dev/test, VizWiz test) loads with empty references; the
runner then writes an evaluation-server submission instead of scoring (see ``benchmarks/submission.py``).
Each sample keeps its submission key in ``fields`` (``question_id`` as in the file, VizWiz ``image``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from flamingo_eval.benchmarks.base import (
    Adapter,
    NoArgs,
    check_annotated,
    check_unique,
    iter_json_list,
    need_field,
    need_id,
    need_list,
    need_str,
    read_json,
)
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample


def _field(obj: Any, key: str, source: Path, i: int) -> Any:
    return need_field(obj, key, source, f"entry {i}")


def _answers(obj: Any, source: Path, what: str, optional: bool = False) -> tuple[str, ...]:
    """The annotator answers of an entry: ``answers`` as a list of strings or of ``{answer: str}`` objects.

    ``optional``: a missing or null ``answers`` means "not annotated" (test splits) instead of an error.
    """
    if optional and (not isinstance(obj, dict) or obj.get("answers") is None):
        return ()
    out = []
    for j, a in enumerate(need_list(obj, "answers", source, what)):
        out.append(a if isinstance(a, str) else need_str(a, "answer", source, f"{what}, answer {j}"))
    return tuple(out)


@dataclass
class VqaArgs:
    """``adapter_args`` of ``vqa``: image file name pattern and the split names it is formatted with."""

    image_pattern: str = MISSING
    """e.g. ``COCO_{split_name}_{image_id:012d}.jpg``."""
    split_names: dict[str, str] = field(default_factory=dict)
    """Our split name -> the name in image file names (default: the split name itself)."""


@dataclass
class EasyVqaArgs:
    """``adapter_args`` of ``easyvqa``."""

    root: str = "package"
    """``package`` = the installed easy_vqa data, or a directory with the same layout."""


@ADAPTERS.register("vqa")
class VQAAdapter(Adapter):
    """Official VQA format: ``{questions: [...]}`` + ``{annotations: [...]}`` + an image directory."""

    Args = VqaArgs
    args: VqaArgs

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_questions", f"{split}_annotations", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def image_path(self, split: str, image_id: Any, source: Path | None = None, i: int = 0) -> Path:
        pattern = self.args.image_pattern
        try:
            name = pattern.format(split_name=self._split_name(split), image_id=image_id)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise UserError(f"{source or self.path(f'{split}_questions')}: entry {i}: image_id {image_id!r} "
                            f"({type(image_id).__name__}) does not fit the card's image_pattern '{pattern}' ({e}); "
                            "the official file has integer image ids") from None
        return self.path(f"{split}_images") / name

    def load(self, split: str) -> list[Sample]:
        """Questions joined with their annotations; both files are streamed entry by entry and only the
        answer strings of each annotation are kept (docs/performance.md, "Full-split scale")."""
        qpath = self.path(f"{split}_questions")
        by_qid: dict[Any, Any] | None = None
        answer_types: dict[Any, str] = {}
        apath = qpath
        if f"{split}_annotations" in self.card.files:  # test splits have none
            apath = self.path(f"{split}_annotations")
            by_qid = _answers_by_qid(apath, answer_types)
        join = _joiner(self.path(f"{split}_images"))
        pattern, split_name = self.args.image_pattern, self._split_name(split)
        samples = []
        for i, q in enumerate(iter_json_list(qpath, "questions")):
            qid = need_id(q, "question_id", qpath, f"entry {i}")
            answers: tuple[str, ...] = ()
            if by_qid is not None:
                ann = by_qid.get(qid)
                if ann is None:
                    raise UserError(f"{qpath}: question_id {qid} has no annotation in {apath}; "
                                    "the question and annotation files must be of the same split")
                what = f"the annotation of question_id {qid}"
                answers = ann if isinstance(ann, tuple) else _answers(ann, apath, what)
                if not answers:
                    raise UserError(f"{apath}: question_id {qid} has an empty answers list")
            image_id = _field(q, "image_id", qpath, i)
            try:
                image = join(pattern.format(split_name=split_name, image_id=image_id))
            except (ValueError, TypeError, KeyError, IndexError):
                image = str(self.image_path(split, image_id, qpath, i))  # raises the explained error
            fields = {"question": need_str(q, "question", qpath, f"entry {i}").strip(), "question_id": qid}
            if qid in answer_types:  # the card's gate.groups (compare tests each answer type apart)
                fields["answer_type"] = answer_types[qid]
            samples.append(Sample(id=str(qid), media=(image,), fields=fields, references=answers))
        return check_unique(samples, str(qpath))

    def _split_name(self, split: str) -> Any:
        return self.args.split_names.get(split, split)


def _answers_by_qid(apath: Path, answer_types: dict[Any, str]) -> dict[Any, Any]:
    """question_id -> its answer strings (a tuple), read entry by entry from the annotation file; each
    annotation's ``answer_type`` (a string, when present) goes into ``answer_types``.

    Equal answer strings share one object (VQAv2 has ~4.4 M answers over a few hundred thousand distinct
    strings). An entry whose answers are not plain (``{answer: str}`` objects or strings) is kept as it is,
    so the join reports it exactly as before when (and only when) a question uses it.
    """
    out: dict[Any, Any] = {}
    strings: dict[str, str] = {}
    for i, ann in enumerate(iter_json_list(apath, "annotations")):
        qid = need_id(ann, "question_id", apath, f"entry {i}")
        kind = ann.get("answer_type")
        if isinstance(kind, str):
            answer_types[qid] = strings.setdefault(kind, kind)
        raw = ann.get("answers")
        if isinstance(raw, list):
            texts = [a if isinstance(a, str) else a.get("answer") if isinstance(a, dict) else None for a in raw]
            if all(isinstance(t, str) for t in texts):
                out[qid] = tuple(strings.setdefault(t, t) for t in texts)  # type: ignore[arg-type]
                continue
        out[qid] = ann
    return out


def _joiner(directory: Path) -> Callable[[str], str]:
    """``str(directory / name)`` for a file name, without building a Path per sample (658k in VQAv2)."""
    base = str(directory)
    plain = base not in ("", ".") and not base.endswith(os.sep)

    def join(name: str) -> str:
        if plain and name and name not in (".", "..") and os.sep not in name and not (os.altsep and os.altsep in name):
            return base + os.sep + name
        return str(directory / name)

    return join


@ADAPTERS.register("textvqa")
class TextVQAAdapter(Adapter):
    """TextVQA 0.5.1: ``{data: [{question_id, question, image_id, answers: [10 str]}]}``.

    Images are ``<split>_images/<image_id>.jpg`` (the val questions use the train image folder).
    """

    Args = NoArgs

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_questions", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        qpath, images = self.path(f"{split}_questions"), self.path(f"{split}_images")
        rows = need_list(read_json(qpath), "data", qpath, "the file")
        samples = []
        for i, row in enumerate(rows):
            qid = need_id(row, "question_id", qpath, f"entry {i}")
            samples.append(Sample(
                id=str(qid), media=(str(images / f"{need_id(row, 'image_id', qpath, f'entry {i}')}.jpg"),),
                fields={"question": need_str(row, "question", qpath, f"entry {i}").strip(), "question_id": qid},
                references=_answers(row, qpath, f"entry {i}", optional=True),
            ))
        return check_annotated(check_unique(samples, str(qpath)), str(qpath))


@ADAPTERS.register("vizwiz")
class VizWizAdapter(Adapter):
    """VizWiz VQA: ``<split>.json`` = [{image, question, answers: [{answer, answer_confidence}]}, ...].

    Sample ids are the image file names (one question per image); ``unanswerable`` is an ordinary answer.
    The test file has no ``answers``: its samples have empty references.
    """

    Args = NoArgs

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_questions", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        qpath, images = self.path(f"{split}_questions"), self.path(f"{split}_images")
        rows = read_json(qpath)
        if not isinstance(rows, list):
            raise UserError(f"{qpath}: expected a JSON list of questions; is this the official VizWiz file?")
        samples = []
        for i, row in enumerate(rows):
            image = need_str(row, "image", qpath, f"entry {i}")
            samples.append(Sample(id=image, media=(str(images / image),),
                                  fields={"question": need_str(row, "question", qpath, f"entry {i}").strip(),
                                          "image": image},
                                  references=_answers(row, qpath, f"entry {i}", optional=True)))
        return check_annotated(check_unique(samples, str(qpath)), str(qpath))


EASYVQA_SHAPES = ("circle", "rectangle", "triangle")


def easyvqa_answer_type(answer: str) -> str:
    """An easy-VQA answer's type (the card's ``gate.groups``): ``yes/no``, ``shape`` or ``colour``."""
    return "yes/no" if answer in ("yes", "no") else "shape" if answer in EASYVQA_SHAPES else "colour"


@ADAPTERS.register("easyvqa")
class EasyVQAAdapter(Adapter):
    """easy-vqa: ``<split>/questions.json`` = [[question, answer, image_id], ...], ``<split>/images/<id>.png``."""

    Args = EasyVqaArgs
    args: EasyVqaArgs

    def __init__(self, card: Any, data_root: Path) -> None:
        super().__init__(card, data_root)
        root = self.args.root
        if root == "package":
            spec = importlib.util.find_spec("easy_vqa")
            if spec is None or not spec.submodule_search_locations:
                raise UserError("easy-vqa is not installed; run `make install` (or pip install easy-vqa==1.0)")
            self.data_root = Path(list(spec.submodule_search_locations)[0]) / "data"
        elif root:
            self.data_root = Path(root)

    def files(self, split: str) -> dict[str, Path]:
        return {k: self.path(k) for k in (f"{split}_questions", f"{split}_images")}

    def load(self, split: str) -> list[Sample]:
        qpath, images = self.path(f"{split}_questions"), self.path(f"{split}_images")
        rows = read_json(qpath)
        if not isinstance(rows, list):
            raise UserError(f"{qpath}: expected a JSON list of [question, answer, image_id]; is this easy-vqa's file?")
        samples = []
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3 and all(isinstance(x, (str, int)) for x in row)
                    and not any(isinstance(x, bool) for x in row)):
                raise UserError(f"{qpath}: entry {i} is not [question, answer, image_id] (strings or integers)")
            question, answer, image_id = row
            samples.append(Sample(id=f"{split}-{i}", media=(str(images / f"{image_id}.png"),),
                                  fields={"question": str(question), "answer_type": easyvqa_answer_type(str(answer))},
                                  references=(str(answer),)))
        return check_unique(samples, str(qpath))
