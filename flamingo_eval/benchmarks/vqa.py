"""VQA-format adapters: official VQAv2 / OK-VQA question+annotation files, and easy-vqa.

VQAv2 questions and annotations are joined by ``question_id`` (never by position). Sample ids are the
question ids; references are the annotator answers in file order (``answers[0]`` is the demo answer).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample


def read_json(path: Path) -> Any:
    """Read JSON or raise a UserError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"missing file {path}; run `flamingo-eval data check` to see the expected layout") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); re-download the official file") from None


def _field(obj: Any, key: str, source: Path, i: int) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{source}: entry {i} has no '{key}' field; is this the official file?")
    return obj[key]


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
        qpath, apath = self.path(f"{split}_questions"), self.path(f"{split}_annotations")
        questions = _field(read_json(qpath), "questions", qpath, 0)
        annotations = _field(read_json(apath), "annotations", apath, 0)
        by_qid: dict[Any, dict[str, Any]] = {}
        for i, ann in enumerate(annotations):
            by_qid[_field(ann, "question_id", apath, i)] = ann
        samples = []
        for i, q in enumerate(questions):
            qid = _field(q, "question_id", qpath, i)
            ann = by_qid.get(qid)
            if ann is None:
                raise UserError(f"{qpath}: question_id {qid} has no annotation in {apath}; "
                                "the question and annotation files must be of the same split")
            answers = tuple(str(_field(a, "answer", apath, i)) for a in _field(ann, "answers", apath, i))
            if not answers:
                raise UserError(f"{apath}: question_id {qid} has an empty answers list")
            samples.append(Sample(
                id=str(qid), media=(str(self.image_path(split, _field(q, "image_id", qpath, i))),),
                fields={"question": str(_field(q, "question", qpath, i)).strip()}, references=answers,
            ))
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
