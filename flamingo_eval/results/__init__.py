"""Run records and what is built from them: leaderboard tables, shot-scaling plots, the CI gate, re-scoring.

Schema and rules: docs/results.md; the gate: docs/ci.md. The record helpers are imported eagerly;
the pandas/matplotlib-backed tools load on first use so the runner's import stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flamingo_eval.results.records import (
    PREDICTIONS_FILE,
    RECORD_FILE,
    SCHEMA_VERSION,
    find_records,
    load_predictions,
    load_record,
    load_records,
    validate_record,
    write_json_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    from flamingo_eval.results.compare import (
        CellComparison,
        Comparison,
        compare_runs,
        format_comparison,
        paired_test,
    )
    from flamingo_eval.results.leaderboard import (
        FORMATS,
        SCALES,
        Leaderboard,
        build_leaderboard,
        latex_escape,
        render_leaderboard,
    )
    from flamingo_eval.results.plots import plot_shot_scaling, save_figure
    from flamingo_eval.results.rescore import score_file

_LAZY = {
    "CellComparison": "compare", "Comparison": "compare", "compare_runs": "compare",
    "format_comparison": "compare", "paired_test": "compare",
    "FORMATS": "leaderboard", "SCALES": "leaderboard", "Leaderboard": "leaderboard",
    "build_leaderboard": "leaderboard", "latex_escape": "leaderboard", "render_leaderboard": "leaderboard",
    "plot_shot_scaling": "plots", "save_figure": "plots", "score_file": "rescore",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"flamingo_eval.results.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "PREDICTIONS_FILE",
    "RECORD_FILE",
    "SCALES",
    "SCHEMA_VERSION",
    "CellComparison",
    "Comparison",
    "Leaderboard",
    "build_leaderboard",
    "compare_runs",
    "find_records",
    "format_comparison",
    "latex_escape",
    "load_predictions",
    "load_record",
    "load_records",
    "paired_test",
    "plot_shot_scaling",
    "render_leaderboard",
    "save_figure",
    "score_file",
    "validate_record",
    "write_json_atomic",
    "write_text_atomic",
]
