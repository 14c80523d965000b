"""Captioning adapters: Karpathy-split json (COCO, Flickr30k) and COCO caption format (NoCaps).

Each split of a card names its file format in ``adapter_args.formats`` (default ``karpathy``), so one
card can draw demos from COCO's Karpathy train split and evaluate on NoCaps val.

- ``karpathy``: ``{images: [{split, filepath?, filename, <id_field>, sentences: [{raw}]}]}``; the card's
  ``adapter_args.splits`` maps our split name to Karpathy split names (default: ``train -> [train]``,
  ``test -> [test]``, ``val -> [val]``; ``restval`` is only used when listed). The image path is
  ``<split>_images/<filepath>/<filename>`` (``filepath`` absent for Flickr30k).
- ``coco``: ``{images: [{id, file_name}], annotations: [{image_id, caption}]}``; image path
  ``<split>_images/<file_name>``.

Sample ids are the image ids (``cocoid`` / ``imgid`` / COCO ``id``); references are all captions of the
image in file order (the first is the demo caption, as in OpenFlamingo).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique, need_id, need_list, need_str
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample

FORMATS = ("karpathy", "coco")


@dataclass
class CaptionsArgs:
    """``adapter_args`` of ``captions``."""

    formats: dict[str, str] = field(default_factory=dict)
    """Split -> annotation format, ``karpathy`` (default) or ``coco``."""
    splits: dict[str, list[str]] = field(default_factory=dict)
    """Split -> the Karpathy ``split`` values it keeps (default: its own name)."""
    id_field: str = "cocoid"
    """Karpathy image field used as the sample id."""


@ADAPTERS.register("captions")
class CaptionsAdapter(Adapter):
    """Image captioning: one sample per image, every reference caption kept."""

    Args = CaptionsArgs
    args: CaptionsArgs

    def split_format(self, split: str) -> str:
        fmt = self.args.formats.get(split, "karpathy")  # a split the card does not name: Karpathy's file
        if fmt not in FORMATS:
            raise UserError(f"benchmark {self.card.id}: unknown caption format '{fmt}' for split {split}; "
                            f"use one of: {', '.join(FORMATS)}")
        return fmt

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_annotations", f"{split}_images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        path = self.path(f"{split}_annotations")
        data = self.json_file(path)
        if self.split_format(split) == "coco":
            samples = self._load_coco(data, path, self.path(f"{split}_images"))
        else:
            samples = self._load_karpathy(data, path, split)
        if not samples:
            raise UserError(f"{path}: no images for split '{split}' of {self.card.id}")
        return check_unique(samples, str(path))

    def _load_karpathy(self, data: Any, path: Path, split: str) -> list[Sample]:
        wanted = set(self.args.splits.get(split, [split]))
        id_field = self.args.id_field
        images = self.path(f"{split}_images")
        samples = []
        for i, img in enumerate(need_list(data, "images", path, "the file")):
            what = f"image {i}"
            if need_str(img, "split", path, what) not in wanted:
                continue
            folder = img.get("filepath")
            if folder is not None and not isinstance(folder, str):
                need_str(img, "filepath", path, what)  # raises: names the field and its type
            where = images / folder if folder else images
            refs = tuple(need_str(snt, "raw", path, f"{what}, sentence {j}").strip()
                         for j, snt in enumerate(need_list(img, "sentences", path, what)))
            image_id = need_id(img, id_field, path, what)
            if not refs:
                raise UserError(f"{path}: image {image_id} has no sentences")
            samples.append(Sample(id=str(image_id), media=(str(where / need_str(img, "filename", path, what)),),
                                  fields={}, references=refs))
        return samples

    def _load_coco(self, data: Any, path: Path, images: Path) -> list[Sample]:
        captions: dict[Any, list[str]] = {}
        for i, ann in enumerate(need_list(data, "annotations", path, "the file")):
            what = f"annotation {i}"
            captions.setdefault(need_id(ann, "image_id", path, what), []).append(
                need_str(ann, "caption", path, what).strip())
        samples = []
        for i, img in enumerate(need_list(data, "images", path, "the file")):
            image_id = need_id(img, "id", path, f"image {i}")
            refs = tuple(captions.get(image_id, ()))
            image = images / need_str(img, "file_name", path, f"image {i}")
            samples.append(Sample(id=str(image_id), media=(str(image),),
                                  fields={"image_id": image_id}, references=refs))
        return samples
