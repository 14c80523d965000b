"""Video adapters: video ids -> files -> ``VideoRef`` media with the card's frame sampling.

``VideoAdapter`` is the base every video format family extends; it resolves a row's video to a file:

* ``adapter_args.video_key`` (default ``"{video_id}"``) formats the row's fields into a lookup key, e.g.
  ``"video{video_id}"`` (MSRVTT-QA) or ``"vid{video_id}"`` (MSVD-QA);
* an optional mapping file ``files.video_map`` (or ``files.<split>_video_map``) turns the key into a file
  stem: a JSON object ``{key: name}`` or text lines ``name key`` (MSVD's ``youtube_mapping.txt``); a key the
  mapping does not list is one error naming the question, the key and the mapping file;
* ``adapter_args.video_pattern`` (default ``"{name}.mp4"``) names the file under ``files.<split>_videos``
  (or ``files.videos``); the clip is found by its stem in any container of
  :data:`~flamingo_eval.video.files.VIDEO_EXTENSIONS` (``.mp4``/``.mkv``/``.webm``/``.avi``/..., any case),
  and ``"a|b"`` names alternative layouts (Kinetics: class folders, or one flat folder);
* ``adapter_args.start_field`` / ``end_field`` name row fields holding a segment in seconds (STAR, iVQA,
  YouCook2, Kinetics, RareAct).

``VideoQAAdapter`` (``adapter: video_qa``) reads open-ended video QA as a JSON list of rows with
``question``, ``answer``, ``video_id`` and ``id`` (the MSVD-QA / MSRVTT-QA files); other field names via
``adapter_args.fields``. Tables are read by :func:`~flamingo_eval.benchmarks.video_rows.read_rows` (csv cells as
text). A new row format overrides ``rows`` only. ``EasyVideoAdapter`` is the
same format over the generated offline easyvideo dataset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_annotated, check_unique, need_field
from flamingo_eval.benchmarks.video_args import EasyVideoArgs, VideoArgs, VideoQAArgs
from flamingo_eval.benchmarks.video_rows import blank, cell_text, read_map, read_rows, row_name, seconds
from flamingo_eval.config import BenchmarkCard
from flamingo_eval.errors import UserError
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import FRAME_RULES, FrameSampling, Sample, VideoRef
from flamingo_eval.video.files import VideoFinder

__all__ = ["EasyVideoAdapter", "VideoAdapter", "VideoQAAdapter", "frame_sampling", "read_rows"]

def frame_sampling(card: BenchmarkCard) -> FrameSampling:
    """The card's :class:`~flamingo_eval.types.FrameSampling` (``count: 8`` when the card sets none).

    Raises:
        UserError: both or neither of count/fps, fps without max, values out of range, or an unknown rule
            (or a rule other than bin_centre with fps).
    """
    f = card.frames
    rule = getattr(f, "rule", None) or "bin_centre"
    if rule not in FRAME_RULES:
        raise UserError(f"benchmark {card.id}: frames.rule '{rule}' is not a frame rule; use one of "
                        f"{', '.join(FRAME_RULES)} (e.g. benchmarks.frames.rule=linspace)")
    if f.count is None and f.fps is None:
        if f.max is not None:
            raise UserError(f"benchmark {card.id}: frames.max needs frames.fps (or use frames.count)")
        return FrameSampling(rule=rule)
    if f.count is not None and f.max is not None:
        raise UserError(f"benchmark {card.id}: frames.max goes with frames.fps; with frames.count drop it")
    try:
        return FrameSampling(count=f.count, fps=f.fps, max=f.max, rule=rule)
    except ValueError as e:
        raise UserError(f"benchmark {card.id}: {e} (e.g. benchmarks.frames.count=8, or "
                        "benchmarks.frames.count=null benchmarks.frames.fps=3 benchmarks.frames.max=30)") from None


class VideoAdapter(Adapter):
    """Base of video adapters: builds :class:`VideoRef` media (see the module docstring)."""

    Args = VideoArgs
    args: VideoArgs

    def path(self, key: str) -> Path:
        """``card.files[key]``; ``"a|b"`` names alternative layouts (e.g. the official csv or a Hugging Face
        parquet mirror, globs allowed): the first that exists, else the first named (``data check`` shows it)."""
        raw = self.card.files.get(key)
        if raw is None or "|" not in str(raw) and not any(c in str(raw) for c in "*?["):
            return super().path(key)
        found = []
        for option in str(raw).split("|"):
            p = Path(option.strip()).expanduser()
            p = p if p.is_absolute() else self.data_root / p
            hits = sorted(p.parent.glob(p.name)) if any(c in p.name for c in "*?[") else [p]
            if any(h.exists() for h in hits):
                return next(h for h in hits if h.exists())
            found.append(p)
        return found[0]

    def has_file(self, key: str) -> bool:
        """The card names ``files[key]`` (a ``null`` override, ``benchmarks.files.KEY=null``, removes it)."""
        return self.card.files.get(key) not in (None, "")

    def sampling(self) -> FrameSampling:
        """The card's frame sampling (``frames:``; ``count: 8`` when unset)."""
        return frame_sampling(self.card)

    @property
    def max_shots(self) -> int | None:
        """``adapter_args.max_shots``: the most demos a prompt may show (RareAct: 0), or None (no limit)."""
        return self.args.max_shots

    def video_files(self, split: str) -> dict[str, Path]:
        """The split's video directory and mapping file (for ``files`` / ``data check``)."""
        out = {}
        for role in ("videos", "video_map"):
            key = f"{split}_{role}" if f"{split}_{role}" in self.card.files else role
            if self.has_file(key):
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
            cache[path] = read_map(path)
        return cache[path], path

    def _finder(self) -> VideoFinder:
        finder: VideoFinder | None = self.__dict__.get("_video_finder")
        if finder is None:
            finder = self.__dict__["_video_finder"] = VideoFinder()
        return finder

    def video_file(self, videos: Path, patterns: str, fields: dict[str, Any], source: Path, what: str) -> Path:
        """The clip under ``videos`` named by the first of ``patterns`` (``"a|b"``: alternative layouts, e.g.
        Kinetics' class folders or one flat folder) found in any accepted container; none found: the first
        pattern's path (``data check`` and the run's start-up check name it)."""
        first = None
        for pattern in patterns.split("|"):
            try:
                file = videos / pattern.strip().format(**fields)
            except (KeyError, ValueError, IndexError) as e:
                raise UserError(f"{source}: {what} cannot fill adapter_args.video_pattern ({e})") from None
            found = self._finder().find(file)
            if found is not None:
                return found
            first = first or file
        assert first is not None
        return first

    def video_ref(
        self, split: str, row: dict[str, Any], source: Path, what: str, pattern: str | None = None
    ) -> VideoRef:
        """The video of ``row`` (fields for ``video_key``; optional segment fields) as a ``VideoRef``;
        ``pattern`` replaces ``adapter_args.video_pattern`` (a mirror that names each row's file)."""
        args = self.args
        try:
            key = args.video_key.format(**row)
        except KeyError as e:
            raise UserError(f"{source}: {what} has no field {e} needed by adapter_args.video_key") from None
        name = key
        mapping = self.video_map(split)
        if mapping is not None:
            table, map_path = mapping
            if key not in table:
                raise UserError(
                    f"{source}: {what} refers to video '{key}', which {map_path} does not list; "
                    "the question and mapping files must come from the same release"
                )
            name = table[key]
        videos = next((p for k, p in self.video_files(split).items() if k.endswith("videos")), None)
        if videos is None:
            raise UserError(f"benchmark card '{self.card.id}' has no files.{split}_videos (or files.videos)")
        pattern = pattern or args.video_pattern
        file = self.video_file(videos, pattern, {**row, "name": name, "key": key}, source, what)
        start, end = (
            None if f is None else seconds(row.get(f), source, what, f) for f in (args.start_field, args.end_field)
        )
        if args.segment_field is not None:  # one [start, end] field (YouCook2)
            seg = need_field(row, args.segment_field, source, what)
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise UserError(f"{source}: {what} field '{args.segment_field}' must be [start, end] seconds")
            start, end = (seconds(x, source, what, args.segment_field) for x in seg)
        if start is not None and end is not None and end <= start:
            raise UserError(f"{source}: {what} has segment {start:g}-{end:g} s, which ends before it starts")
        return VideoRef(str(file), start=start, end=end, frames=self.sampling())


@ADAPTERS.register("video_qa")
class VideoQAAdapter(VideoAdapter):
    """Video QA, open-ended or multiple choice: ``files.<split>_qa`` rows (JSON list, jsonl, csv or parquet).

    ``adapter_args`` (all optional; defaults read MSVD-QA / MSRVTT-QA):

    * ``fields``: row columns for ``id``, ``question``, ``answer``, ``video_id``, ``type``;
    * ``id_format``: the sample id from row fields, e.g. ``"{video}_{qid}"`` (NExT-QA); a row lacking a field
      it names (the Hugging Face mirror has no ``qid``) is numbered ``<split>-<row>``; no id field at all
      (iVQA) numbers every row;
    * ``answers``: columns that each hold one reference answer (iVQA's ``answer1`` .. ``answer5``);
    * ``options``: columns holding the answer options (NExT-QA ``a0`` .. ``a4``), or ``choices``: a row field
      holding a list of ``{choice_text_key: text}`` objects (STAR ``choices``/``choice``) -- then the sample is
      multiple choice: ``fields["candidates"]`` are the options, ``label`` the right one (``answer_is_index``:
      the answer is the option's index, else its text) and ``references`` its text;
    * ``type_regex``: a regex whose first group extracts the question type from the ``type`` column (STAR's
      ``Interaction_T1_13`` -> ``Interaction``); the type goes to the metric as ``extra["type"]``;
    * ``second_answers``: ``files.<split>_second_answers`` is a JSON ``{video: {qid: answer}}`` (NExT-OE's
      ``add_reference_answer_<split>.json``) whose answer becomes the second reference, looked up by the row
      fields named in ``second_answers`` (e.g. ``[video, qid]``);
    * ``second_answer_column``: a row column holding that second reference (the NExT-QA parquet mirror's
      ``additional_ref_answer``); when the split's rows have it, it is used and the JSON file is not needed.

    A blank question cell, or a blank segment bound, is one line naming the file, the row and the column.
    """

    Args = VideoQAArgs
    args: VideoQAArgs

    def files(self, split: str) -> dict[str, Path]:
        out = {f"{split}_qa": self.path(f"{split}_qa")}
        if self.has_file(f"{split}_second_answers") and not self._column_answers(split):
            out[f"{split}_second_answers"] = self.path(f"{split}_second_answers")
        return {**out, **self.video_files(split)}

    def rows(self, split: str) -> tuple[list[dict[str, Any]], Path]:
        """The split's rows (dicts) and the file they come from (read once per adapter)."""
        path = self.path(f"{split}_qa")
        cache: dict[Path, list[dict[str, Any]]] = self.__dict__.setdefault("_rows", {})
        if path not in cache:
            cache[path] = read_rows(path)
        return cache[path], path

    def _column_answers(self, split: str) -> bool:
        """The split's rows carry ``second_answer_column`` (then the second-answer JSON is not needed)."""
        column = self.args.second_answer_column
        if not column or not self.path(f"{split}_qa").is_file():
            return False
        rows, _ = self.rows(split)
        return bool(rows) and isinstance(rows[0], dict) and column in rows[0]

    def load(self, split: str) -> list[Sample]:
        args = self.args
        names = args.fields
        rows, path = self.rows(split)
        second, column = self._second_answers(split), args.second_answer_column
        samples = []
        for i, row in enumerate(rows):
            what = row_name(path, i)
            qid = _row_id(row, names["id"], args.id_format, f"{split}-{i}")
            refs, label, options = self._answers(row, names["answer"], path, what)
            extra = row.get(column) if column and column in row else (
                None if second is None else _lookup(second, [row.get(f) for f in args.second_answers or ()]))
            refs = refs + ((cell_text(extra).strip(),) if not blank(extra) and refs else ())
            question = need_field(row, names["question"], path, what)
            if blank(question):
                raise UserError(f"{path}: {what} column '{names['question']}' is empty; fix or drop the row")
            fields: dict[str, Any] = {
                k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) or v is None
            }
            fields.update(question=str(question).strip(), question_id=qid, sample_id=str(qid),
                          video_id=need_field(row, names["video_id"], path, what))
            qtype = self._type(row, names["type"])
            if qtype:
                fields.update(type=qtype, metric_extra={"type": qtype})
            if options is not None:
                fields["candidates"] = options
            samples.append(Sample(id=str(qid), media=(self.video_ref(split, row, path, what),), fields=fields,
                                  references=refs, label=label))
        return check_annotated(check_unique(samples, str(path)), str(path))

    def _answers(
        self, row: dict[str, Any], answer_field: str, path: Path, what: str
    ) -> tuple[tuple[str, ...], int | None, tuple[str, ...] | None]:
        """(references, label, options) of a row (module docstring of the class)."""
        args = self.args
        answer = row.get(answer_field)
        if args.answers is not None:
            return tuple(cell_text(row[c]).strip() for c in args.answers if not blank(row.get(c))), None, None
        options = _options(row, args, path, what)
        if options is None:
            if isinstance(answer, (list, tuple)):
                return tuple(cell_text(a).strip() for a in answer if not blank(a)), None, None
            return (() if blank(answer) else (cell_text(answer).strip(),)), None, None
        if blank(answer):
            return (), None, options  # an unannotated (test) split
        if args.answer_is_index:
            try:
                label = int(answer)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UserError(f"{path}: {what} has answer {answer!r}, not an option index") from None
        else:
            label = options.index(str(answer)) if str(answer) in options else -1
        if not 0 <= label < len(options):
            raise UserError(f"{path}: {what} has answer {answer!r}, which is none of its {len(options)} options")
        return (options[label],), label, options

    def _type(self, row: dict[str, Any], type_field: str) -> str:
        value = row.get(type_field)
        if blank(value):
            return ""
        pattern = self.args.type_regex
        if pattern:
            m = re.match(pattern, str(value))
            return m.group(1) if m else ""
        return str(value)

    def _second_answers(self, split: str) -> Any:
        key = f"{split}_second_answers"
        if not self.has_file(key) or self.args.second_answers is None or self._column_answers(split):
            return None
        return self.json_file(self.path(key))


def _row_id(row: dict[str, Any], id_field: str | None, id_format: str | None, fallback: str) -> Any:
    if id_format:
        try:
            return str(id_format).format(**row)
        except (KeyError, IndexError):
            return fallback
    if id_field and not blank(row.get(id_field)):
        return row[id_field]
    return fallback


def _options(row: dict[str, Any], args: VideoQAArgs, path: Path, what: str) -> tuple[str, ...] | None:
    if args.options is not None:
        cells = [need_field(row, c, path, what) for c in args.options]
        empty = [c for c, v in zip(args.options, cells) if blank(v)]
        if empty:
            raise UserError(f"{path}: {what} column '{empty[0]}' (an answer option) is empty; fix or drop the row")
        return tuple(cell_text(v).strip() for v in cells)
    if args.choices is not None:
        text = args.choice_text
        choices = need_field(row, args.choices, path, what)
        if not isinstance(choices, list):
            raise UserError(f"{path}: {what}: field '{args.choices}' must be a list of options")
        return tuple(str(need_field(c, text, path, f"{what} option {j}")).strip() for j, c in enumerate(choices))
    return None


def _lookup(table: Any, keys: list[Any]) -> Any:
    for k in keys:
        if not isinstance(table, dict) or str(k) not in table:
            return None
        table = table[str(k)]
    return table


@ADAPTERS.register("easyvideo")
class EasyVideoAdapter(VideoQAAdapter):
    """The generated easyvideo dataset (``flamingo_eval/video/easyvideo.py``) in the ``video_qa`` layout.

    ``adapter_args.root``: ``cache`` (default: the asset cache; ``make install`` writes it, and a run
    generates it on first use) or a directory holding a dataset written by ``easyvideo.generate``.
    """

    Args = EasyVideoArgs
    args: EasyVideoArgs

    def __init__(self, card: Any, data_root: Path) -> None:
        from flamingo_eval.models.assets import cache_root
        from flamingo_eval.video.easyvideo import DIRNAME

        super().__init__(card, data_root)
        self.generated = self.args.root == "cache"
        self.data_root = cache_root() / DIRNAME if self.generated else Path(self.args.root).expanduser()

    def missing(self, split: str) -> list[tuple[str, Path]]:
        return [] if self.generated else super().missing(split)  # the cache copy is generated on first load

    def load(self, split: str) -> list[Sample]:
        if self.generated:
            from flamingo_eval.video.easyvideo import easyvideo_root

            easyvideo_root()  # generates it (about 20 s of CPU) unless make install already did
        return super().load(split)
