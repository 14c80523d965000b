"""The adapter contract: official files on disk -> typed ``Sample`` lists.

An adapter class is registered in ``flamingo_eval.registry.ADAPTERS`` under the name a benchmark card
uses (``adapter: vqa``). It is constructed with the validated card and the resolved data root; it
never knows about models, prompts or metrics.

Malformed files are one :class:`UserError` line naming the file, the entry and the field: adapters read
fields through :func:`need_field` / :func:`need_list` / :func:`need_str` / :func:`need_id`. As a last line
of defence, an exception of the kinds malformed JSON content raises (``TypeError``, ``ValueError``, ...)
escaping a subclass's ``load`` becomes one line naming the split's files (see ``Adapter.__init_subclass__``).
"""

from __future__ import annotations

import functools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from flamingo_eval.errors import UserError
from flamingo_eval.plugin_args import NoArgs, parse
from flamingo_eval.types import Sample

_CONTENT_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError)


def _named_load(load: Callable[[Any, str], list[Sample]]) -> Callable[[Any, str], list[Sample]]:
    @functools.wraps(load)
    def wrapper(self: Adapter, split: str) -> list[Sample]:
        try:
            return load(self, split)
        except _CONTENT_ERRORS as e:
            try:
                files = ", ".join(str(p) for p in self.files(split).values())
            except Exception:  # noqa: BLE001 - only for the message
                files = f"the files of split '{split}'"
            raise UserError(f"{files}: unexpected content for {self.card.id} ({type(e).__name__}: "
                            f"{str(e)[:200]}); is this the official file?") from None
    return wrapper


class Adapter(ABC):
    """Base adapter. Subclasses implement ``files`` and ``load``.

    ``Args`` is the type of the card's ``adapter_args``: a dataclass whose fields are the keys the
    adapter reads, typed, with their defaults -- the only place the defaults live (``NoArgs``, the
    default: no keys). ``config_load.validate`` checks the card against it at start-up (``parse_args``), so a
    misspelt or mistyped key fails before any data or weights load, and the adapter reads the checked
    instance, ``self.args``, never the card's raw mapping.
    """

    Args: ClassVar[type] = NoArgs
    args: Any
    """The card's ``adapter_args`` as an ``Args`` instance (subclasses narrow the annotation)."""
    metric_fields: ClassVar[tuple[str, ...]] = ()
    """Names of ``Sample.fields`` the benchmark's metric reads; the runner copies them into the prediction
    line's ``extra`` and the metric input (e.g. VisDial's ``gt_relevance`` for NDCG)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the subclass's ``load`` so no malformed file ends in a traceback (module docstring)."""
        super().__init_subclass__(**kwargs)
        if "load" in cls.__dict__ and not getattr(cls.__dict__["load"], "__isabstractmethod__", False):
            cls.load = _named_load(cls.__dict__["load"])  # type: ignore[method-assign,assignment]

    def __init__(self, card: Any, data_root: Path) -> None:
        self.card = card
        self.data_root = Path(data_root)
        self.args = self.parse_args(card)

    @classmethod
    def parse_args(cls, card: Any) -> Any:
        """``card.adapter_args`` as an ``Args`` instance, or one UserError line naming the card and the key."""
        return parse(cls.Args, card.adapter_args, "benchmarks.adapter_args", f"adapter '{card.adapter}'", card.id)

    def path(self, key: str) -> Path:
        """Resolve ``card.files[key]`` (relative to the data root unless absolute)."""
        try:
            rel = self.card.files[key]
        except KeyError:
            raise UserError(f"benchmark card '{self.card.id}' has no files.{key}") from None
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.data_root / p

    @abstractmethod
    def files(self, split: str) -> dict[str, Path]:
        """Named files/directories the split needs (for ``data check``)."""

    def json_file(self, path: Path) -> Any:
        """``read_json(path)``, parsed once per adapter (Karpathy's one file serves train and test)."""
        cache: dict[Path, Any] = self.__dict__.setdefault("_json_files", {})
        if path not in cache:
            cache[path] = read_json(path)
        return cache[path]

    def missing(self, split: str) -> list[tuple[str, Path]]:
        return [(k, p) for k, p in self.files(split).items() if not p.exists()]

    @abstractmethod
    def load(self, split: str) -> list[Sample]:
        """Read the split; sample ids must be unique (duplicates are an error naming the file)."""


def check_unique(samples: list[Sample], source: str) -> list[Sample]:
    """``samples`` unchanged, or one UserError naming ``source`` and the first repeated sample id."""
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise UserError(f"{source}: duplicate sample id '{s.id}'; ids must be unique within a split")
        seen.add(s.id)
    return samples


def read_json(path: Path) -> Any:
    """Read JSON (UTF-8, a byte-order mark allowed) or raise a UserError naming the file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"missing file {path}; run `flamingo-eval data check` to see the expected layout") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a JSON file; point the card's file at the official "
                        "file (`flamingo-eval data check` shows the expected layout)") from None
    except json.JSONDecodeError as e:
        what = "an empty file" if e.pos == 0 and not e.doc.strip() else f"not valid JSON ({e})"
        raise UserError(f"{path}: {what}; re-download the official file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); "
                        "re-download the official file") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to read; this is not the official file") from None
    except ValueError as e:  # an integer with more digits than Python converts
        raise UserError(f"{path}: unreadable JSON value ({str(e)[:120]}); re-download the official file") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


class _Unstreamable(Exception):
    """The streaming reader met something it does not handle; the caller re-reads with ``read_json``."""


_WS = " \t\n\r"
_CHUNK = 1 << 20


class _Buffer:
    """A sliding text window over a file, for decoding one JSON value at a time (``raw_decode``)."""

    def __init__(self, f: Any) -> None:
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.decoder = json.JSONDecoder()

    def fill(self) -> None:
        # read at least as much as is pending, so one large value costs O(size), not O(size^2 / chunk)
        chunk = self.f.read(max(_CHUNK, len(self.buf) - self.pos))
        self.eof = not chunk
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file)."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n or self.eof:
                return self.buf[self.pos] if self.pos < n else ""
            self.fill()

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise _Unstreamable
        self.pos += 1

    def value(self) -> Any:
        """The next JSON value; one that touches the window's end is decoded again with more text (a number
        cut at the edge would otherwise decode as a shorter one)."""
        while True:
            self.peek()
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except (ValueError, RecursionError):
                if self.eof:
                    raise _Unstreamable from None
                self.fill()
                continue
            if end >= len(self.buf) and not self.eof:
                self.fill()
                continue
            self.pos = end
            return obj


def _stream_list(f: Any, key: str, path: Path) -> Iterator[Any]:
    """The entries of the list under top-level ``key``, one at a time; the whole file is still checked."""
    b, found = _Buffer(f), False
    b.expect("{")
    if b.peek() == "}":
        raise _Unstreamable
    while True:
        name = b.value()
        if not isinstance(name, str):
            raise _Unstreamable
        b.expect(":")
        if name != key:
            b.value()
        elif found:  # json.load would keep the last list, which is already partly handed out
            raise UserError(f"{path}: the field '{key}' occurs twice; re-download the official file")
        else:
            found = True
            b.expect("[")
            if b.peek() == "]":
                b.pos += 1
            else:
                while True:
                    yield b.value()
                    c = b.peek()
                    b.pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        raise _Unstreamable
        c = b.peek()
        b.pos += 1
        if c == "}":
            break
        if c != ",":
            raise _Unstreamable
    if b.peek() != "" or not found:
        raise _Unstreamable


def iter_json_list(path: Path, key: str) -> Iterator[Any]:
    """The entries of ``{..., key: [entries], ...}`` in ``path``, decoded one at a time.

    The same entries as ``need_list(read_json(path), key, path, "the file")`` with the same errors, but
    without the whole file's objects in memory at once: a 350 MB VQAv2 annotation file is ~3 GB of Python
    objects when loaded whole. Anything the streaming reader does not handle (malformed JSON, no such key,
    not a list, unreadable file) is read again with :func:`read_json`, whose error names the file.
    """
    n = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for entry in _stream_list(f, key, path):
                n += 1
                yield entry
        return
    except (_Unstreamable, OSError, ValueError, RecursionError):
        pass
    yield from need_list(read_json(path), key, path, "the file")[n:]


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "object", list: "list", str: "string", bool: "boolean",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def need_field(obj: Any, key: str, source: Path, what: str, official: str = "the official file") -> Any:
    """``obj[key]``, or a UserError naming the file, the entry (``what``) and the missing field."""
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{source}: {what} has no '{key}' field; is this {official}?")
    return obj[key]


def _need_kind(obj: Any, key: str, source: Path, what: str, ok: Callable[[Any], bool], want: str) -> Any:
    value = need_field(obj, key, source, what)
    if not ok(value):
        got = _type_name(value) + ("" if value is None else f" {value!r:.40}")
        where = "" if what == "the file" else f"{what}: "
        raise UserError(f"{source}: {where}field '{key}' must be {want}, got {got}")
    return value


def need_list(obj: Any, key: str, source: Path, what: str) -> list[Any]:
    """``obj[key]`` when it is a JSON list, else a UserError naming the file, entry and field."""
    return _need_kind(obj, key, source, what, lambda v: isinstance(v, list), "a list")  # type: ignore[no-any-return]


def need_str(obj: Any, key: str, source: Path, what: str) -> str:
    """``obj[key]`` when it is a JSON string, else a UserError naming the file, entry and field."""
    return _need_kind(obj, key, source, what, lambda v: isinstance(v, str), "a string")  # type: ignore[no-any-return]


def need_id(obj: Any, key: str, source: Path, what: str) -> int | str:
    """``obj[key]`` when it is an id: an integer or a string (not a boolean, number with a fraction or null)."""
    return _need_kind(obj, key, source, what,  # type: ignore[no-any-return]
                      lambda v: isinstance(v, (int, str)) and not isinstance(v, bool), "an integer or a string")


def need_int(obj: Any, key: str, source: Path, what: str) -> int:
    """``obj[key]`` when it is a JSON integer."""
    return _need_kind(obj, key, source, what,  # type: ignore[no-any-return]
                      lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")


def is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean; an integer beyond the float range is not finite)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_annotated(samples: list[Sample], source: str) -> list[Sample]:
    """Refuse a split where some entries have answers and others none (it could be neither scored nor
    submitted: the gap would only show after the model ran)."""
    bare = [s.id for s in samples if not s.references]
    if bare and len(bare) < len(samples):
        raise UserError(f"{source}: {len(bare)} of {len(samples)} entries have no answers (e.g. '{bare[0]}'); "
                        "an annotated split needs answers for every question")
    return samples
