"""Wall-clock time per phase of a run (data, vision, prefill, decode, candidates, scoring).

The model accumulates its phases, the runner its own, and the record's ``throughput.phases`` holds both
(docs/results.md). On CUDA the clock is read only after the device has finished the phase's work
(``sync``), so a phase is charged for what it queued, not for what the next one waited on; the
syncs sit where the host waits anyway (after a prefill, between decode steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["PhaseTimer", "cuda_sync"]


class PhaseTimer:
    """Accumulates seconds per named phase; ``phase`` blocks may nest (the inner time counts in both)."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)

    def since(self, snapshot: dict[str, float]) -> dict[str, float]:
        """Seconds per phase accumulated after ``snapshot`` (phases with no time are left out)."""
        out = {k: v - snapshot.get(k, 0.0) for k, v in self.seconds.items()}
        return {k: round(v, 4) for k, v in out.items() if v > 0}


def cuda_sync(devices: list[object]) -> Callable[[], None]:
    """A sync over the CUDA devices among ``devices`` (a no-op when there is none)."""
    import torch

    cuda = sorted({str(d) for d in devices if getattr(d, "type", str(d).split(":")[0]) == "cuda"})
    if not cuda:
        return lambda: None

    def sync() -> None:
        for d in cuda:
            torch.cuda.synchronize(d)

    return sync
