"""All terminal output lives here (the only module importing rich).

Rich progress and tables on a TTY; plain lines when stdout is not a TTY or CI=true.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

T0 = time.perf_counter()
"""When this module was imported (at CLI start-up): phase lines show the time since."""


class Reporter:
    """Progress sink of a run; the base class prints nothing (non-zero torchrun ranks, library use)."""

    def phase(self, message: str) -> None:
        """A start-up step begins (reading data, loading the model, selecting demos)."""
        self.log(message)

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int, resumed: bool = False) -> None:
        """``n`` more samples are done; ``resumed`` ones were done by an earlier process (not in the rate)."""

    def finish(self) -> None: ...

    def log(self, message: str) -> None: ...


def fancy() -> bool:
    """True when stdout is a terminal outside CI: live progress, else plain lines."""
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


class PlainReporter(Reporter):
    """Plain lines (not a TTY, CI): phases with the time since start-up; progress after the first batch,
    then at most every ``every`` seconds, and at the end."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.total = self.done = self.resumed = 0
        self.t0 = self.last = 0.0

    def phase(self, message: str) -> None:
        print(f"[{time.perf_counter() - T0:6.1f}s] {message}", flush=True)

    def start(self, total: int, description: str) -> None:
        self.total, self.done, self.resumed, self.t0, self.last = total, 0, 0, time.perf_counter(), -1.0
        print(f"[{self.t0 - T0:6.1f}s] {description}: {total} samples", flush=True)

    def advance(self, n: int, resumed: bool = False) -> None:
        self.done += n
        if resumed:
            self.resumed += n
            if n:
                print(f"  {self.done}/{self.total} already done by an earlier run (resumed)", flush=True)
            return
        now = time.perf_counter() - self.t0
        if self.last < 0 or now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = (self.done - self.resumed) / now if now > 0 else 0.0
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

    def phase(self, message: str) -> None:
        self.log(f"[{time.perf_counter() - T0:6.1f}s] {message}")

    def advance(self, n: int, resumed: bool = False) -> None:
        if resumed:  # not this process's work: moves the bar, not the rate
            self.progress.update(self.task, advance=n)
            return
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
    """The progress reporter for this terminal (fancy or plain)."""
    return RichReporter() if fancy() else PlainReporter()


class TrainProgress:
    """Training progress (``flamingo_eval.training.Progress``): a rich bar with the running loss and ETA on
    a TTY, else a plain line every ``every`` seconds. ``update`` gets NaN for stages without a loss."""

    def __init__(self, every: float = 15.0) -> None:
        self.every, self.rich = every, fancy()
        self.progress: Any = None

    def start(self, total: int, description: str) -> None:
        self.total, self.desc, self.t0, self.last = total, description, time.perf_counter(), 0.0
        self.ema: float | None = None
        if self.rich:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.progress import TimeRemainingColumn as Eta

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), Eta())
            self.progress.start()
            self.task = self.progress.add_task(description, total=total, loss="")
        else:
            print(f"{description}: {total}", flush=True)

    def update(self, done: int, loss: float) -> None:
        if loss == loss:  # not NaN: smooth the noisy per-batch loss for display
            self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        shown = "" if self.ema is None else f"loss {self.ema:.4f}"
        if self.progress is not None:
            self.progress.update(self.task, completed=done, loss=shown)
            return
        now = time.perf_counter() - self.t0
        if now - self.last >= self.every or done >= self.total:
            self.last = now
            eta = (self.total - done) * now / max(done, 1)
            print(f"  {self.desc} {done}/{self.total}  {shown}  elapsed {now:.0f}s  ETA {eta:.0f}s", flush=True)

    def log(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message)
        else:
            print(message, flush=True)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def results_table(record: dict[str, Any], run_dir: str) -> None:
    """Print one row per shots setting: mean ± std over trials, n, seconds."""
    b, m = record["benchmark"], record["model"]
    title = f"{b['id']}@{b['version']} · {m['name']} · {b['metric']}"
    rows = []
    for r in record["results"]:
        trials = r["trials"]
        extras = trials[0].get("extras", {}) if trials else {}
        score = "submission" if r["mean"] is None else f"{r['mean']:.2f} ± {r.get('std') or 0.0:.2f}"
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
        console = Console()
        console.print(table)
        for w in run_warnings(record):
            console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)
        return
    print(title)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(footer)
    for w in run_warnings(record):
        print(f"warning: {w}")


def run_warnings(record: dict[str, Any]) -> list[str]:
    """What the numbers hide: demos dropped to fit the context, samples skipped (per shots setting)."""
    out = []
    context = record.get("config", {}).get("model", {}).get("max_context")
    for r in record["results"]:
        trials = r["trials"]
        dropped = sum(int(t.get("dropped_demos") or 0) for t in trials)
        if dropped:
            out.append(f"{r['shots']}-shot: {dropped} demos dropped over {len(trials)} trial(s) to fit "
                       f"model.max_context={context}; per sample: dropped_demos in predictions.jsonl")
        skipped = sum(int(t.get("skipped") or 0) for t in trials)
        if skipped:
            reason = next((why for t in trials for why in (t.get("skip_reasons") or {}).values()), "")
            out.append(f"{r['shots']}-shot: {skipped} samples skipped" + (f" (e.g. {reason})" if reason else "")
                       + "; ids and reasons: skip_reasons in record.json")
    return out


def error(message: str) -> None:
    """Print one error line to stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def plain_table(head: tuple[str, ...], rows: Sequence[Sequence[str]], title: str = "") -> None:
    """Print ``rows`` under ``head`` as an aligned plain-text table (with an optional title)."""
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
