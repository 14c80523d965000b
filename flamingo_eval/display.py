"""All terminal output lives here (the only module importing rich).

Rich progress and tables on a TTY; plain lines when stdout is not a TTY or CI=true.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from flamingo_eval.runner import Reporter


def fancy() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


class PlainReporter(Reporter):
    """One line every few seconds: done/total, samples/s, ETA."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every

    def start(self, total: int, description: str) -> None:
        self.total, self.done, self.t0, self.last = total, 0, time.perf_counter(), 0.0
        print(f"{description}: {total} samples", flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter() - self.t0
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / now if now > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"  {self.done}/{self.total}  {rate:.2f} samples/s  ETA {eta:.0f}s", flush=True)

    def log(self, message: str) -> None:
        print(message, flush=True)


class RichReporter(Reporter):
    def start(self, total: int, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn())
        self.progress.start()
        self.t0 = time.perf_counter()
        self.done = 0
        self.task = self.progress.add_task(description, total=total, rate="")

    def advance(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, advance=n, rate=f"{rate:.2f} samples/s")

    def finish(self) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        progress = getattr(self, "progress", None)  # a message before start() (e.g. nothing to do)
        if progress is None:
            print(message, flush=True)
        else:
            progress.console.print(message)


def reporter() -> Reporter:
    return RichReporter() if fancy() else PlainReporter()


def results_table(record: dict[str, Any], run_dir: str) -> None:
    """Print one row per shots setting: mean ± std over trials, n, seconds."""
    b, m = record["benchmark"], record["model"]
    title = f"{b['id']}@{b['version']} · {m['name']} · {b['metric']}"
    rows = []
    for r in record["results"]:
        trials = r["trials"]
        extras = trials[0].get("extras", {}) if trials else {}
        score = "submission" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f}"
        rows.append((str(r["shots"]), score, str(len(trials)), str(trials[0]["n"]),
                     ", ".join(f"{k}={v:.2f}" for k, v in extras.items()),
                     str(sum(t["skipped"] for t in trials)), f"{sum(t['seconds'] for t in trials):.1f}"))
    head = ("shots", "score (mean ± std)", "trials", "n", "extras", "skipped", "seconds")
    tp = record.get("throughput", {})
    footer = f"{tp.get('samples_per_s', 0):.2f} samples/s · run dir: {run_dir}"
    if fancy():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=footer)
        for h in head:
            table.add_column(h, justify="right" if h != "extras" else "left")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    print(title)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(footer)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def plain_table(head: tuple[str, ...], rows: Sequence[Sequence[str]], title: str = "") -> None:
    if fancy():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None)
        for h in head:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        Console().print(table)
        return
    if title:
        print(title)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
