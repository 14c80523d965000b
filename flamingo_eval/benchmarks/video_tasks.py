"""Video captioning and video classification/retrieval adapters (the QA family is in ``video.py``).

``VideoCaptionAdapter`` (``adapter: video_captions``) reads ``files.<split>_annotations`` in one of two layouts:

* ``rows`` (default): a table (JSON list, jsonl, csv, parquet) with one row per clip: VATEX's
  ``[{videoID, enCap: [10 captions], chCap}]`` (or its parquet mirror with ``videoID, enCap``), or the YouCook2
  parquet mirror ``id, segment, sentence, video_path``. ``adapter_args.fields`` names the ``id``, ``video_id``
  and ``captions`` columns (a list of captions or one caption);
* ``youcook2``: the official ``youcookii_annotations_trainval.json`` (or the parquet mirror: rows ``id, segment,
  sentence, video_path``, the path relative to ``files.videos``): ``{"database": {video: {subset,
  recipe_type, annotations: [{id, segment: [start, end], sentence}]}}}``; every annotated segment of a video
  whose ``subset`` is ``adapter_args.subsets[split]`` (``training`` / ``validation``) is one sample
  ``<video>_<segment id>`` with its sentence as the reference and the segment as the clip.

``VideoClassAdapter`` (``adapter: video_classes``) reads one row per clip from ``files.<split>_annotations``
(csv or any table ``read_rows`` reads). ``candidates`` are the class names, ranked by the runner:

* Kinetics-700 (``layout: kinetics``): ``label, youtube_id, time_start, time_end, split``; the classes are the
  sorted labels of the eval split; ``adapter_args.per_class`` keeps the first N clips of each class (Flamingo:
  10 val clips per class);
* RareAct (``layout: rareact``): ``id, video_id, start, end, class_id, verb, noun, annotation``; the classes
  are ``class_text`` (default ``"{verb} {noun}"``) by ``class_id``; every row is a clip scored against every
  class, and the metric gets ``verb, noun, class_id, annotation, video_id`` (``rareact_mwap``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import check_annotated, check_unique, need_field
from flamingo_eval.benchmarks.video import VideoAdapter
from flamingo_eval.benchmarks.video_args import VideoCaptionArgs, VideoClassArgs
from flamingo_eval.benchmarks.video_rows import blank, cell_text, read_rows, row_name
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import Sample

__all__ = ["VideoCaptionAdapter", "VideoClassAdapter"]


@ADAPTERS.register("video_captions")
class VideoCaptionAdapter(VideoAdapter):
    """Video captioning (module docstring): each sample's references are its captions."""

    Args = VideoCaptionArgs
    args: VideoCaptionArgs

    def files(self, split: str) -> dict[str, Path]:
        return {f"{split}_annotations": self.path(f"{split}_annotations"), **self.video_files(split)}

    def rows(self, split: str) -> list[dict[str, Any]]:
        """One row per clip (``id``, ``video_id``, captions; ``start``/``end`` for YouCook2 segments)."""
        path = self.path(f"{split}_annotations")
        if self.args.layout != "youcook2":
            return read_rows(path)
        if path.suffix.lower() != ".json":  # the parquet mirror: id, segment, sentence, video_path per segment
            return _mirror_segments(read_rows(path), path)
        data = self.json_file(path)
        base = need_field(data, "database", path, "the file")
        subset = self.args.subsets.get(split, split)
        rows = []
        for video, entry in base.items():
            if need_field(entry, "subset", path, f"video {video}") != subset:
                continue
            for ann in need_field(entry, "annotations", path, f"video {video}"):
                what = f"video {video} segment"
                rows.append({"id": f"{video}_{need_field(ann, 'id', path, what)}", "video_id": video,
                             "segment": need_field(ann, "segment", path, what),
                             "sentence": need_field(ann, "sentence", path, what),
                             "subset": subset, "recipe_type": entry.get("recipe_type", "")})
        return rows

    def load(self, split: str) -> list[Sample]:
        names = self.args.fields
        path = self.path(f"{split}_annotations")
        samples = []
        for i, row in enumerate(self.rows(split)):
            what = row_name(path, i)
            caps = row.get(names["captions"])
            refs = tuple(cell_text(c).strip() for c in caps if not blank(c)) if isinstance(caps, (list, tuple)) else (
                () if blank(caps) else (cell_text(caps).strip(),))
            sid = need_field(row, names["id"], path, what)
            row = {**row, "video_id": need_field(row, names["video_id"], path, what)}
            fields = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool))}
            pattern = "{video_path}" if "video_path" in row else None  # the mirror names each row's file
            samples.append(Sample(id=str(sid), media=(self.video_ref(split, row, path, what, pattern),),
                                  fields=fields, references=refs))
        return check_annotated(check_unique(samples, str(path)), str(path))


@ADAPTERS.register("video_classes")
class VideoClassAdapter(VideoAdapter):
    """Video classification / retrieval over class names (module docstring)."""

    Args = VideoClassArgs
    args: VideoClassArgs

    def files(self, split: str) -> dict[str, Path]:
        return {f"{split}_annotations": self.path(f"{split}_annotations"), **self.video_files(split)}

    def _layout(self) -> str:
        layout = self.args.layout
        if layout not in ("kinetics", "rareact"):
            raise UserError(f"benchmark {self.card.id}: adapter_args.layout must be kinetics or rareact, "
                            f"got '{layout}'")
        return layout

    def _rows(self, split: str) -> list[dict[str, Any]]:
        cache: dict[str, list[dict[str, Any]]] = self.__dict__.setdefault("_row_cache", {})
        if split not in cache:
            cache[split] = read_rows(self.path(f"{split}_annotations"))
        return cache[split]

    @cached_property
    def candidates(self) -> tuple[str, ...]:
        """The class names in label order (module docstring)."""
        path = self.path(f"{self.card.eval_split}_annotations")
        rows = self._rows(self.card.eval_split)
        if self._layout() == "kinetics":
            return tuple(sorted({str(need_field(r, "label", path, f"entry {i}")) for i, r in enumerate(rows)}))
        text = self.args.class_text
        names: dict[int, str] = {}
        for i, r in enumerate(rows):
            cid = int(need_field(r, "class_id", path, f"entry {i}"))
            names.setdefault(cid, text.format(**r))
        if sorted(names) != list(range(len(names))):
            raise UserError(f"{path}: class_id values must be 0..{len(names) - 1} without gaps")
        return tuple(names[c] for c in range(len(names)))

    def load(self, split: str) -> list[Sample]:
        path = self.path(f"{split}_annotations")
        index = {c: i for i, c in enumerate(self.candidates)}
        per_class = self.args.per_class
        kept: dict[str, int] = {}
        samples = []
        for i, row in enumerate(self._rows(split)):
            what = row_name(path, i)
            fields: dict[str, Any] = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool))}
            if self._layout() == "kinetics":
                name = str(need_field(row, "label", path, what))
                if per_class is not None and kept.get(name, 0) >= int(per_class):
                    continue
                kept[name] = kept.get(name, 0) + 1
                sid = str(row.get("id", f"{row.get('youtube_id', '')}_{row.get('time_start', '')}_{i}"))
            else:
                cid = int(need_field(row, "class_id", path, what))
                name = self.candidates[cid]
                sid = str(need_field(row, "id", path, what))
                fields["metric_extra"] = {"verb": str(row["verb"]), "noun": str(row["noun"]), "class_id": cid,
                                          "annotation": int(need_field(row, "annotation", path, what)),
                                          "video_id": str(need_field(row, "video_id", path, what))}
            if name not in index:
                raise UserError(f"{path}: {what} has class '{name}', which the {self.card.eval_split} split lacks")
            samples.append(Sample(id=sid, media=(self.video_ref(split, row, path, what),), fields=fields,
                                  references=(name,), label=index[name]))
        return check_unique(samples, str(path))


def _mirror_segments(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """The YouCook2 parquet mirror's rows with ``video_id`` (the ``video_path`` stem) and a unique, stable ``id``.

    The mirror's ``id`` repeats within a video, so a segment is named ``<video>_<k>`` instead: ``k`` is its rank
    among its video's segments ordered by (start, end), the official annotations' ``<video>_<segment id>``
    numbering; the mirror's own value stays in ``mirror_id``.
    """
    out = []
    for i, r in enumerate(rows):
        video_path = need_field(r, "video_path", path, row_name(path, i))
        if blank(video_path):
            raise UserError(f"{path}: {row_name(path, i)} column 'video_path' is empty; fix or drop the row")
        seg = r.get("segment")
        key = tuple(seg) if isinstance(seg, (list, tuple)) else ()
        out.append((Path(str(video_path)).stem, key, i, r))
    rank: dict[int, int] = {}
    seen: dict[str, int] = {}
    for video, _key, i, _r in sorted(out, key=lambda t: (t[0], t[1], t[2])):
        rank[i] = seen.get(video, 0)
        seen[video] = rank[i] + 1
    return [{**r, "mirror_id": r.get("id"), "id": f"{video}_{rank[i]}", "video_id": video}
            for video, _key, i, r in out]
