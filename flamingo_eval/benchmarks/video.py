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

import json
import math
import re
from pathlib import Path
from typing import Any

from flamingo_eval.benchmarks.base import Adapter, check_unique, need_field, read_json
from flamingo_eval.errors import UserError
from flamingo_eval.frames import frame_sampling
from flamingo_eval.registry import ADAPTERS
from flamingo_eval.types import FrameSampling, Sample, VideoRef

__all__ = ["EasyVideoAdapter", "VideoAdapter", "VideoQAAdapter", "read_rows"]

QA_FIELDS = {"id": "id", "question": "question", "answer": "answer", "video_id": "video_id", "type": "type"}


class VideoAdapter(Adapter):
    """Base of video adapters: builds :class:`VideoRef` media (see the module docstring)."""

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

    def sampling(self) -> FrameSampling:
        """The card's frame sampling (``frames:``; ``count: 8`` when unset)."""
        return frame_sampling(self.card)

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

    def video_ref(
        self, split: str, row: dict[str, Any], source: Path, what: str, pattern: str | None = None
    ) -> VideoRef:
        """The video of ``row`` (fields for ``video_key``; optional segment fields) as a ``VideoRef``;
        ``pattern`` replaces ``adapter_args.video_pattern`` (a mirror that names each row's file)."""
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
                raise UserError(
                    f"{source}: {what} refers to video '{key}', which {map_path} does not list; "
                    "the question and mapping files must come from the same release"
                )
            name = table[key]
        videos = next((p for k, p in self.video_files(split).items() if k.endswith("videos")), None)
        if videos is None:
            raise UserError(f"benchmark card '{self.card.id}' has no files.{split}_videos (or files.videos)")
        try:
            pattern = pattern or str(args.get("video_pattern", "{name}.mp4"))
            file = videos / pattern.format(**{**row, "name": name, "key": key})
        except (KeyError, ValueError) as e:
            raise UserError(f"{source}: {what} cannot fill adapter_args.video_pattern ({e})") from None
        start, end = (
            _seconds(row.get(args[f]), source, what, args[f]) if f in args else None
            for f in ("start_field", "end_field")
        )
        if "segment_field" in args:  # one [start, end] field (YouCook2)
            seg = need_field(row, args["segment_field"], source, what)
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise UserError(f"{source}: {what} field '{args['segment_field']}' must be [start, end] seconds")
            start, end = (_seconds(x, source, what, args["segment_field"]) for x in seg)
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
      fields named in ``second_answers`` (e.g. ``[video, qid]``).
    """

    def files(self, split: str) -> dict[str, Path]:
        out = {k: self.path(k) for k in (f"{split}_qa", f"{split}_second_answers") if k in self.card.files}
        return {**out, **self.video_files(split)}

    def rows(self, split: str) -> tuple[list[dict[str, Any]], Path]:
        """The split's rows (dicts) and the file they come from."""
        path = self.path(f"{split}_qa")
        return read_rows(path), path

    def load(self, split: str) -> list[Sample]:
        args = self.card.adapter_args
        names = {**QA_FIELDS, **dict(args.get("fields", {}))}
        rows, path = self.rows(split)
        second = self._second_answers(split)
        samples = []
        for i, row in enumerate(rows):
            what = f"entry {i}"
            qid = _row_id(row, names["id"], args.get("id_format"), f"{split}-{i}")
            refs, label, options = self._answers(row, names["answer"], path, what)
            if second is not None:
                extra = _lookup(second, [row.get(f) for f in args["second_answers"]])
                refs = refs + ((str(extra),) if extra is not None and refs else ())
            fields: dict[str, Any] = {
                k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) or v is None
            }
            fields.update(
                question=str(need_field(row, names["question"], path, what)).strip(),
                question_id=qid,
                sample_id=str(qid),
                video_id=need_field(row, names["video_id"], path, what),
            )
            qtype = self._type(row, names["type"])
            if qtype:
                fields.update(type=qtype, metric_extra={"type": qtype})
            if options is not None:
                fields["candidates"] = options
            samples.append(
                Sample(
                    id=str(qid),
                    media=(self.video_ref(split, row, path, what),),
                    fields=fields,
                    references=refs,
                    label=label,
                )
            )
        return check_unique(samples, str(path))

    def _answers(
        self, row: dict[str, Any], answer_field: str, path: Path, what: str
    ) -> tuple[tuple[str, ...], int | None, tuple[str, ...] | None]:
        """(references, label, options) of a row (module docstring of the class)."""
        args = self.card.adapter_args
        answer = row.get(answer_field)
        if "answers" in args:
            return tuple(str(row[c]) for c in args["answers"] if not _blank(row.get(c))), None, None
        options = _options(row, args, path, what)
        if options is None:
            if isinstance(answer, (list, tuple)):
                return tuple(str(a) for a in answer), None, None
            return (() if _blank(answer) else (str(answer),)), None, None
        if _blank(answer):
            return (), None, options  # an unannotated (test) split
        if args.get("answer_is_index", False):
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
        if _blank(value):
            return ""
        pattern = self.card.adapter_args.get("type_regex")
        if pattern:
            m = re.match(str(pattern), str(value))
            return m.group(1) if m else ""
        return str(value)

    def _second_answers(self, split: str) -> Any:
        key = f"{split}_second_answers"
        if key not in self.card.files or "second_answers" not in self.card.adapter_args:
            return None
        return self.json_file(self.path(key))


def _blank(value: Any) -> bool:
    """None, NaN (pandas' empty csv cell) or an empty string."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _row_id(row: dict[str, Any], id_field: str | None, id_format: str | None, fallback: str) -> Any:
    if id_format:
        try:
            return str(id_format).format(**row)
        except (KeyError, IndexError):
            return fallback
    if id_field and not _blank(row.get(id_field)):
        return row[id_field]
    return fallback


def _options(row: dict[str, Any], args: Any, path: Path, what: str) -> tuple[str, ...] | None:
    if "options" in args:
        return tuple(str(need_field(row, c, path, what)).strip() for c in args["options"])
    if "choices" in args:
        text = str(args.get("choice_text", "choice"))
        choices = need_field(row, str(args["choices"]), path, what)
        if not isinstance(choices, list):
            raise UserError(f"{path}: {what}: field '{args['choices']}' must be a list of options")
        return tuple(str(need_field(c, text, path, f"{what} option {j}")).strip() for j, c in enumerate(choices))
    return None


def _lookup(table: Any, keys: list[Any]) -> Any:
    for k in keys:
        if not isinstance(table, dict) or str(k) not in table:
            return None
        table = table[str(k)]
    return table


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON list, a jsonl, a csv or a parquet file (by extension), as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of rows; is this the official file?")
        return rows
    if not path.is_file():
        raise UserError(f"missing file {path}; run `flamingo-eval data check` to see the expected layout")
    try:
        if suffix == ".jsonl":
            with open(path, encoding="utf-8-sig") as f:
                return [json.loads(line) for line in f if line.strip()]
        import pandas as pd

        if suffix == ".csv":
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise UserError(f"{path}: unknown table format '{suffix}' (json, jsonl, csv or parquet)")
    except ImportError as e:
        raise UserError(f"reading {path} needs {e.name}; pip install pyarrow") from None
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({str(e)[:160]}); re-download the official file") from None
    return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """numpy scalars/arrays (pandas cells) -> Python values, so rows are JSON-like whatever the format."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


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
