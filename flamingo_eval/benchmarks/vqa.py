"""VQA-format adapters: VQAv2 / OK-VQA, TextVQA, VizWiz official files, and easy-vqa.

VQAv2 questions and annotations are joined by ``question_id`` (never by position). Sample ids are the
question ids; references are the annotator answers in file order (``answers[0]`` is the demo answer).
A split without an annotation file (VQAv2 test-dev/test, VizWiz test) loads with empty references; the
runner then writes an evaluation-server submission instead of scoring (see ``benchmarks/submission.py``).
Each sample keeps its submission key in ``fields`` (``question_id`` as in the file, VizWiz ``image``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique, need_field, read_json
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample


def _field(obj: Any, key: str, source: Path, i: int) -> Any:
    return need_field(obj, key, source, f"entry {i}")


@ADAPTERS.register("vqa")
class VQAAdapter(Adapter):
    """Official VQA format: ``{questions: [...]}`` + ``{annotations: [...]}`` + an image directory."""

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_questions", f"{split}_annotations", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def image_path(self, split: str, image_id: Any) -> Path:
        args = self.card.adapter_args
        names = args.get("split_names", {})
        name = args["image_pattern"].format(split_name=names.get(split, split), image_id=image_id)
        return self.path(f"{split}_images") / name

    def load(self, split: str) -> list[Sample]:
        qpath = self.path(f"{split}_questions")
        questions = _field(read_json(qpath), "questions", qpath, 0)
        by_qid: dict[Any, dict[str, Any]] | None = None
        apath = qpath
        if f"{split}_annotations" in self.card.files:  # test splits have none
            apath = self.path(f"{split}_annotations")
            annotations = _field(read_json(apath), "annotations", apath, 0)
            by_qid = {_field(ann, "question_id", apath, i): ann for i, ann in enumerate(annotations)}
        samples = []
        for i, q in enumerate(questions):
            qid = _field(q, "question_id", qpath, i)
            answers: tuple[str, ...] = ()
            if by_qid is not None:
                ann = by_qid.get(qid)
                if ann is None:
                    raise UserError(f"{qpath}: question_id {qid} has no annotation in {apath}; "
                                    "the question and annotation files must be of the same split")
                answers = tuple(str(_field(a, "answer", apath, i)) for a in _field(ann, "answers", apath, i))
                if not answers:
                    raise UserError(f"{apath}: question_id {qid} has an empty answers list")
            samples.append(Sample(
                id=str(qid), media=(str(self.image_path(split, _field(q, "image_id", qpath, i))),),
                fields={"question": str(_field(q, "question", qpath, i)).strip(), "question_id": qid},
                references=answers,
            ))
        return check_unique(samples, str(qpath))


@ADAPTERS.register("textvqa")
class TextVQAAdapter(Adapter):
    """TextVQA 0.5.1: ``{data: [{question_id, question, image_id, answers: [10 str]}]}``.

    Images are ``<split>_images/<image_id>.jpg`` (the val questions use the train image folder).
    """

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_questions", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        qpath, images = self.path(f"{split}_questions"), self.path(f"{split}_images")
        rows = _field(read_json(qpath), "data", qpath, 0)
        samples = []
        for i, row in enumerate(rows):
            qid = _field(row, "question_id", qpath, i)
            answers = tuple(str(a) for a in row.get("answers", ()))
            samples.append(Sample(
                id=str(qid), media=(str(images / f"{_field(row, 'image_id', qpath, i)}.jpg"),),
                fields={"question": str(_field(row, "question", qpath, i)).strip(), "question_id": qid},
                references=answers,
            ))
        return check_unique(samples, str(qpath))


@ADAPTERS.register("vizwiz")
class VizWizAdapter(Adapter):
    """VizWiz VQA: ``<split>.json`` = [{image, question, answers: [{answer, answer_confidence}]}, ...].

    Sample ids are the image file names (one question per image); ``unanswerable`` is an ordinary answer.
    The test file has no ``answers``: its samples have empty references.
    """

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
            image = str(_field(row, "image", qpath, i))
            answers = tuple(str(_field(a, "answer", qpath, i)) for a in row.get("answers") or ())
            samples.append(Sample(id=image, media=(str(images / image),),
                                  fields={"question": str(_field(row, "question", qpath, i)).strip(),
                                          "image": image},
                                  references=answers))
        return check_unique(samples, str(qpath))


@ADAPTERS.register("easyvqa")
class EasyVQAAdapter(Adapter):
    """easy-vqa: ``<split>/questions.json`` = [[question, answer, image_id], ...], ``<split>/images/<id>.png``."""

    def __init__(self, card: Any, data_root: Path) -> None:
        root = card.adapter_args.get("root", "package")
        if root == "package":
            spec = importlib.util.find_spec("easy_vqa")
            if spec is None or not spec.submodule_search_locations:
                raise UserError("easy-vqa is not installed; run `make install` (or pip install easy-vqa==1.0)")
            data_root = Path(list(spec.submodule_search_locations)[0]) / "data"
        elif root:
            data_root = Path(root)
        super().__init__(card, data_root)

    def files(self, split: str) -> dict[str, Path]:
        return {k: self.path(k) for k in (f"{split}_questions", f"{split}_images")}

    def load(self, split: str) -> list[Sample]:
        qpath, images = self.path(f"{split}_questions"), self.path(f"{split}_images")
        rows = read_json(qpath)
        samples = []
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 3):
                raise UserError(f"{qpath}: entry {i} is not [question, answer, image_id]")
            question, answer, image_id = row
            samples.append(Sample(id=f"{split}-{i}", media=(str(images / f"{image_id}.png"),),
                                  fields={"question": str(question)}, references=(str(answer),)))
        return check_unique(samples, str(qpath))
