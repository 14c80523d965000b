"""The adapter contract: official files on disk -> typed ``Sample`` lists.

An adapter class is registered in ``flamingo_eval.registry.ADAPTERS`` under the name a benchmark card
uses (``adapter: vqa``). It is constructed with the validated card and the resolved data root; it
never knows about models, prompts or metrics.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.types import Sample


class Adapter(ABC):
    """Base adapter. Subclasses implement ``files`` and ``load``."""

    def __init__(self, card: Any, data_root: Path) -> None:
        self.card = card
        self.data_root = Path(data_root)

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
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise UserError(f"{source}: duplicate sample id '{s.id}'; ids must be unique within a split")
        seen.add(s.id)
    return samples


def read_json(path: Path) -> Any:
    """Read JSON or raise a UserError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"missing file {path}; run `flamingo-eval data check` to see the expected layout") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); re-download the official file") from None


def need_field(obj: Any, key: str, source: Path, what: str, official: str = "the official file") -> Any:
    """``obj[key]``, or a UserError naming the file, the entry (``what``) and the missing field."""
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{source}: {what} has no '{key}' field; is this {official}?")
    return obj[key]
