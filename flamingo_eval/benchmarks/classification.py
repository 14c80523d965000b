"""Close-ended classification adapters: ImageNet-1k (class folders) and Hateful Memes (jsonl).

Both expose ``candidates``: the class strings the runner ranks in ``mode: rank``; ``Sample.label`` is
the index of the correct one and ``references[0]`` its string (the demo answer).

- ``imagenet_folder``: ``<split>_images/<wnid>/*.JPEG``; class index = position of the wnid in the
  sorted list of class folders (the standard torchvision order), class names from open_clip's
  ``zero_shot_metadata.IMAGENET_CLASSNAMES`` (1000, in that order). So every class folder must be
  present, even an empty one. ``adapter_args.images_per_class: N`` keeps the first N files (sorted by
  name) of each class in the eval split (Flamingo evaluated 10 per class).
- ``hateful_memes``: ``<split>.jsonl`` lines ``{id, img, label, text}``; candidates ``("no", "yes")``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from flamingo_eval.benchmarks.base import Adapter, NoArgs, check_unique
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def imagenet_classnames() -> tuple[str, ...]:
    """The 1000 ImageNet class names in wnid-sorted order (open_clip's list)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


@ADAPTERS.register("imagenet_folder")
class ImageNetFolderAdapter(Adapter):
    """ImageNet-style class folders ranked over the full list of class names."""

    @dataclass
    class Args:
        """``adapter_args`` of ``imagenet_folder``."""

        images_per_class: int | None = None
        """Keep the first N files of each class in the eval split (Flamingo: 10); null = all."""

    args: Args

    @functools.cached_property
    def candidates(self) -> tuple[str, ...]:
        """The 1000 class names (open_clip's list), loaded on first use: `list`/`data check` need not import it."""
        return imagenet_classnames()

    def files(self, split: str) -> dict[str, Path]:
        return {k: self.path(k) for k in (f"{split}_images",) if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        root = self.path(f"{split}_images")
        if not root.is_dir():
            raise UserError(f"missing folder {root}; run `flamingo-eval data check {self.card.id}`")
        wnids = sorted(d.name for d in root.iterdir() if d.is_dir())
        if len(wnids) != len(self.candidates):
            raise UserError(f"{root}: found {len(wnids)} class folders but {len(self.candidates)} class names; "
                            "the class index is the sorted folder order, so every class folder must exist")
        per_class = self.args.images_per_class if split == self.card.eval_split else None
        samples = []
        for label, wnid in enumerate(wnids):
            files = sorted(f.name for f in (root / wnid).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            for name in files[: int(per_class)] if per_class else files:
                samples.append(Sample(id=f"{wnid}/{name}", media=(str(root / wnid / name),),
                                      fields={"wnid": wnid}, references=(self.candidates[label],), label=label))
        return check_unique(samples, str(root))


@ADAPTERS.register("hateful_memes")
class HatefulMemesAdapter(Adapter):
    """Hateful Memes jsonl; images at ``<images>/<img>`` where ``img`` is e.g. ``img/42953.png``."""

    Args = NoArgs

    candidates = ("no", "yes")

    def files(self, split: str) -> dict[str, Path]:
        keys = [f"{split}_annotations", "images"]
        return {k: self.path(k) for k in keys if k in self.card.files}

    def load(self, split: str) -> list[Sample]:
        path, images = self.path(f"{split}_annotations"), self.path("images")
        samples = []
        try:
            lines = path.read_text(encoding="utf-8-sig").split("\n")  # not splitlines(): \x85 etc. are text
        except FileNotFoundError:
            raise UserError(f"missing file {path}; run `flamingo-eval data check {self.card.id}`") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a directory, not the Hateful Memes .jsonl file") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e}); re-download the official file") from None
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                label = row.get("label")
                sample_id, img, text = row["id"], row["img"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
                raise UserError(f"{path}:{n}: not a Hateful Memes line {{id, img, label, text}} "
                                f"({type(e).__name__}: {str(e)[:100]})") from None
            if label not in (0, 1, None) or isinstance(label, bool):
                raise UserError(f"{path}:{n}: label must be 0 or 1, got {label!r:.40}")
            if isinstance(sample_id, bool) or not isinstance(sample_id, (int, str)):
                raise UserError(f"{path}:{n}: id must be an integer or a string, got {sample_id!r:.40}")
            if not isinstance(img, str) or not isinstance(text, str):
                raise UserError(f"{path}:{n}: img and text must be strings")
            sample_id, label = str(sample_id), None if label is None else int(label)  # 1.0 -> 1
            refs = (self.candidates[label],) if label is not None else ()
            samples.append(Sample(id=sample_id, media=(str(images / img),), fields={"text": text},
                                  references=refs, label=label))
        return check_unique(samples, str(path))
