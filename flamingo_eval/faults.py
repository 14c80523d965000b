"""Crash points for the kill-and-resume tests (TEST-ONLY: never set the variable in real runs).

``FLAMINGO_EVAL_CRASH_AT=<phase>[:<n>[:<signal>]]`` makes the process send itself ``signal`` (default
``KILL``) the ``n``-th time (default 1) it reaches :func:`crash_point` ``(phase)``. With ``KILL`` no cleanup
handler, ``finally`` block or buffered write runs, exactly like a node failure or the OOM killer; ``INT`` is a
Ctrl-C at exactly that point (the interrupt test: no race between the signal and the run's progress). Phases:

* ``startup``   — in the run directory set-up, after the directories exist and before the run state is written;
* ``demo_pool`` — in the RICES demo-pool encode, after its first image batch;
* ``batch``     — after a batch's predictions were appended to its part file (mid-trial);
* ``predictions`` — after a scored trial was appended to ``predictions.jsonl``, before its index entry;
* ``final``     — in the final write, after ``record.json`` says complete and before ``partial/`` is removed.

Unset (always, outside tests), :func:`crash_point` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "FLAMINGO_EVAL_CRASH_AT"
PHASES = ("startup", "demo_pool", "batch", "predictions", "final")

_seen: dict[str, int] = {}


def crash_point(phase: str) -> None:
    """SIGKILL this process here if ``$FLAMINGO_EVAL_CRASH_AT`` names ``phase`` (see the module doc)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != phase:
        return
    nth, _, sig = rest.partition(":")
    _seen[phase] = _seen.get(phase, 0) + 1
    if _seen[phase] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, f"SIG{sig or 'KILL'}"))
