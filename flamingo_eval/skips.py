"""The line a run stops with when every sample of a trial was skipped: how many, and why (counted)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["no_samples_left"]


def _reason(error: str) -> str:
    """A skip's error, shortened to its kind: the first clause, numbers and quoted paths generalised."""
    first = re.split(r"[;(]", error or "unknown reason", maxsplit=1)[0].strip()
    first = re.sub(r"'[^']*'|\"[^\"]*\"|\S*/\S*", "…", first)
    first = re.sub(r"\bsample \S+:", "sample …:", first)  # the reason, not which sample
    return re.sub(r"\d+", "N", first)[:120].strip()


def no_samples_left(skipped: Sequence[dict[str, Any]]) -> str:
    """``no samples left to score: all N were skipped (Mx reason, ...)`` with the fix for the common case."""
    if not skipped:
        return "no samples left to score: the trial has no samples (check --limit and the eval split)"
    counts = Counter(_reason(str(s.get("error", ""))) for s in skipped)
    reasons = "; ".join(f"{n}x {r}" for r, n in counts.most_common(3))
    more = f"; {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    first = str(skipped[0].get("error", ""))
    return (f"no samples left to score: all {len(skipped)} were skipped ({reasons}{more}); the first: "
            f"{first[:160]} (sample {skipped[0].get('sample_id')})")
