"""Helpers the benchmark tools share: timing with peak memory, the easy-vqa questions, a fresh latent cache."""

from __future__ import annotations

import ctypes
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from flamingo_eval.models.eval_model import FlamingoEvalModel


class Peak:
    """Peak resident memory above the level at entry, sampled every 5 ms from /proc/self/statm."""

    def __enter__(self) -> Peak:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self.peak = rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    with Peak() as p:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return out, dt, p.mib


def easyvqa() -> tuple[list[str], list[str], list[str], list[str]]:
    import easy_vqa

    qs, answers, image_ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    first: dict[int, int] = {}
    for j, i in enumerate(image_ids):  # one question per image: every demo and query shows its own image
        first.setdefault(i, j)
    keep = sorted(first.values())
    return [qs[j] for j in keep], [answers[j] for j in keep], [paths[image_ids[j]] for j in keep], []


def median_timed(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] = lambda: None) -> tuple[Any, float, float]:  # noqa: E501
    """(output, median seconds, peak MiB of the first run) over ``repeats`` runs, ``setup`` untimed before each."""
    runs = []
    for _ in range(repeats):
        setup()
        runs.append(timed(fn))
    return runs[0][0], statistics.median(r[1] for r in runs), runs[0][2]


def fresh_cache(m: FlamingoEvalModel) -> None:
    m.latents.__init__(m.latents.max_bytes, None, m.latent_device)  # type: ignore[misc]  # a fresh run: empty cache
