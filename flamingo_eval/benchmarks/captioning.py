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

from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique, need_field
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample

FORMATS = ("karpathy", "coco")


@ADAPTERS.register("captions")
class CaptionsAdapter(Adapter):
    """Image captioning: one sample per image, every reference caption kept."""

    def split_format(self, split: str) -> str:
        fmt = str(self.card.adapter_args.get("formats", {}).get(split, "karpathy"))
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
        args = self.card.adapter_args
        wanted = set(args.get("splits", {}).get(split, [split]))
        id_field = str(args.get("id_field", "cocoid"))
        images = self.path(f"{split}_images")
        samples = []
        for img in need_field(data, "images", path, "the file"):
            if need_field(img, "split", path, "an image") not in wanted:
                continue
            where = images / img["filepath"] if img.get("filepath") else images
            refs = tuple(str(need_field(s, "raw", path, "a sentence")).strip()
                         for s in need_field(img, "sentences", path, "an image"))
            if not refs:
                raise UserError(f"{path}: image {img.get(id_field)} has no sentences")
            samples.append(Sample(id=str(need_field(img, id_field, path, "an image")),
                                  media=(str(where / need_field(img, "filename", path, "an image")),),
                                  fields={}, references=refs))
        return samples

    def _load_coco(self, data: Any, path: Path, images: Path) -> list[Sample]:
        captions: dict[Any, list[str]] = {}
        for ann in need_field(data, "annotations", path, "the file"):
            captions.setdefault(need_field(ann, "image_id", path, "an annotation"), []).append(
                str(need_field(ann, "caption", path, "an annotation")).strip())
        samples = []
        for img in need_field(data, "images", path, "the file"):
            image_id = need_field(img, "id", path, "an image")
            refs = tuple(captions.get(image_id, ()))
            samples.append(Sample(id=str(image_id), media=(str(images / need_field(img, "file_name", path, "an image")),),
                                  fields={"image_id": image_id}, references=refs))
        return samples
