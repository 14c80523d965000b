"""Name -> factory registries for adapters, samplers, models, metrics, extractors, video decoders and request kinds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from flamingo_eval.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; ``get`` on an unknown name lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UserError(f"unknown {self.kind} '{name}'; available: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


ADAPTERS: Registry = Registry("adapter")
SAMPLERS: Registry = Registry("demo sampler")
METRICS: Registry = Registry("metric")
EXTRACTORS: Registry = Registry("answer extractor")
DECODERS: Registry = Registry("decoder family")
VISION: Registry = Registry("vision encoder")
ARCHITECTURES: Registry = Registry("model architecture")
VIDEO_DECODERS: Registry = Registry("video decoder")
REQUEST_KINDS: Registry = Registry("request kind (benchmark mode)")
