"""Video adapters: video ids -> files -> ``VideoRef`` media with the card's frame sampling.

``VideoAdapter`` is the base every video format family extends; it resolves a row's video to a file:

* ``adapter_args.video_key`` (default ``"{video_id}"``) formats the row's fields into a lookup key, e.g.
  ``"video{video_id}"`` (MSRVTT-QA) or ``"vid{video_id}"`` (MSVD-QA);
* an optional mapping file ``files.video_map`` (or ``files.<split>_video_map``) turns the key into a file
  stem: a JSON object ``{key: name}`` or text lines ``name key`` (MSVD's ``youtube_mapping.txt``); a key the
  mapping does not list is one error naming the question, the key and the mapping file;
* ``adapter_args.video_pattern`` (default ``"{name}.mp4"``) names the file under ``files.<split>_videos``
  (or ``files.videos``);
* ``adapter_args.start_field`` / ``end_field`` name row fields holding a segment in seconds (STAR, iVQA,
  YouCook2, Kinetics, RareAct).

``VideoQAAdapter`` (``adapter: video_qa``) reads open-ended video QA as a JSON list of rows with
``question``, ``answer``, ``video_id`` and ``id`` (the MSVD-QA / MSRVTT-QA files); other field names via
``adapter_args.fields``. A new row format (csv, parquet) overrides ``rows`` only. ``EasyVideoAdapter`` is the
same format over the generated offline easyvideo dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique, need_field, read_json
from flamingo_eval.config import frame_sampling
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import FrameSampling, Sample, VideoRef

__all__ = ["EasyVideoAdapter", "VideoAdapter", "VideoQAAdapter"]

QA_FIELDS = {"id": "id", "question": "question", "answer": "answer", "video_id": "video_id"}


class VideoAdapter(Adapter):
    """Base of video adapters: builds :class:`VideoRef` media (see the module docstring)."""

    def sampling(self) -> FrameSampling:
        """The card's frame sampling (``frames:``; ``count: 8`` when unset)."""
        return frame_sampling(self.card)  # type: ignore[no-any-return]

    def video_files(self, split: str) -> dict[str, Path]:
        """The split's video directory and mapping file (for ``files`` / ``data check``)."""
        out = {}
        for role in ("videos", "video_map"):
            key = f"{split}_{role}" if f"{split}_{role}" in self.card.files else role
            if key in self.card.files:
                out[key] = self.path(key)
        return out

    def video_map(self, split: str) -> tuple[dict[str, str], Path] | None:
        """(key -> file stem, the mapping file) when the card names one, else None."""
        files = self.video_files(split)
        path = next((p for k, p in files.items() if k.endswith("video_map")), None)
        if path is None:
            return None
        cache: dict[Path, dict[str, str]] = self.__dict__.setdefault("_maps", {})
        if path not in cache:
            cache[path] = _read_map(path)
        return cache[path], path

    def video_ref(self, split: str, row: dict[str, Any], source: Path, what: str) -> VideoRef:
        """The video of ``row`` (fields for ``video_key``; optional segment fields) as a ``VideoRef``."""
        args = self.card.adapter_args
        try:
            key = str(args.get("video_key", "{video_id}")).format(**row)
        except KeyError as e:
            raise UserError(f"{source}: {what} has no field {e} needed by adapter_args.video_key") from None
        name = key
        mapping = self.video_map(split)
        if mapping is not None:
            table, map_path = mapping
            if key not in table:
                raise UserError(f"{source}: {what} refers to video '{key}', which {map_path} does not list; "
                                "the question and mapping files must come from the same release")
            name = table[key]
        videos = next((p for k, p in self.video_files(split).items() if k.endswith("videos")), None)
        if videos is None:
            raise UserError(f"benchmark card '{self.card.id}' has no files.{split}_videos (or files.videos)")
        file = videos / str(args.get("video_pattern", "{name}.mp4")).format(name=name, key=key)
        start, end = (_seconds(row.get(args[f]), source, what, args[f]) if f in args else None
                      for f in ("start_field", "end_field"))
        return VideoRef(str(file), start=start, end=end, frames=self.sampling())


@ADAPTERS.register("video_qa")
class VideoQAAdapter(VideoAdapter):
    """Open-ended video QA: ``files.<split>_qa`` is a JSON list of ``{question, answer, video_id, id}``.

    Sample ids are the row ids; ``references`` the answer (a list-valued answer is kept whole); every other
    scalar field of the row (``type``, ``category_id``, ...) is copied into ``Sample.fields``.
    """

    def files(self, split: str) -> dict[str, Path]:
        qa = {f"{split}_qa": self.path(f"{split}_qa")} if f"{split}_qa" in self.card.files else {}
        return {**qa, **self.video_files(split)}

    def rows(self, split: str) -> tuple[list[dict[str, Any]], Path]:
        """The split's rows (dicts) and the file they come from; override for csv / parquet formats."""
        path = self.path(f"{split}_qa")
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of questions; is this the official QA file?")
        return rows, path

    def load(self, split: str) -> list[Sample]:
        names = {**QA_FIELDS, **dict(self.card.adapter_args.get("fields", {}))}
        rows, path = self.rows(split)
        samples = []
        for i, row in enumerate(rows):
            what = f"entry {i}"
            qid = need_field(row, names["id"], path, what)
            answer = row.get(names["answer"])
            refs = tuple(str(a) for a in answer) if isinstance(answer, list) else (
                () if answer is None else (str(answer),))
            fields = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) or v is None}
            fields.update(question=str(need_field(row, names["question"], path, what)).strip(), question_id=qid,
                          video_id=need_field(row, names["video_id"], path, what))
            samples.append(Sample(id=str(qid), media=(self.video_ref(split, row, path, what),), fields=fields,
                                  references=refs))
        return check_unique(samples, str(path))


@ADAPTERS.register("easyvideo")
class EasyVideoAdapter(VideoQAAdapter):
    """The generated easyvideo dataset (``flamingo_eval/video/easyvideo.py``) in the ``video_qa`` layout.

    ``adapter_args.root``: ``cache`` (default: the asset cache; ``make install`` writes it, and a run
    generates it on first use) or a directory holding a dataset written by ``easyvideo.generate``.
    """

    def __init__(self, card: Any, data_root: Path) -> None:
        from flamingo_eval.models.assets import cache_root
        from flamingo_eval.video.easyvideo import DIRNAME

        root = card.adapter_args.get("root", "cache")
        self.generated = root == "cache"
        super().__init__(card, cache_root() / DIRNAME if self.generated else Path(root).expanduser())

    def missing(self, split: str) -> list[tuple[str, Path]]:
        return [] if self.generated else super().missing(split)  # the cache copy is generated on first load

    def load(self, split: str) -> list[Sample]:
        if self.generated:
            from flamingo_eval.video.easyvideo import easyvideo_root

            easyvideo_root()  # generates it (about 20 s of CPU) unless make install already did
        return super().load(split)


def _read_map(path: Path) -> dict[str, str]:
    """A video-id mapping: JSON ``{key: name}`` or text lines ``name key`` (whitespace separated)."""
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object {{video key: file name}}")
        return {str(k): str(v) for k, v in data.items()}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the video mapping {path} ({e}); re-download it") from None
    out = {}
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise UserError(f"{path}:{n}: expected 'file_name video_key', got {line.strip()!r}")
        out[parts[1]] = parts[0]
    return out


def _seconds(value: Any, source: Path, what: str, field: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {what} has {field}={value!r}, not a number of seconds") from None
