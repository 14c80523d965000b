"""``flamingo-eval run`` with every evaluated sample shown another sample's images: a vision control.

Sample ``i`` of the eval split gets the media of sample ``(i + n // 2) % n`` (far enough away to be another
image); the demos keep theirs, so only the link between a question and its image is broken. A model that
really uses its images falls to about its text-only score (``mini`` vs ``mini-blind``: docs/training.md).
Takes the arguments of ``flamingo-eval run``:

    python -m tools.shuffled_images easyvqa --model mini --shots 0 4 8 --trials 2 --limit 200 \\
        --output runs/demo/mini-shuffled
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flamingo_eval import task
from flamingo_eval.cli import main


def shuffling(make_adapter: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``task.make_adapter`` (what the run calls) so the eval split's samples come back with rotated media."""

    def make(card: Any, data_root: str | None) -> Any:
        adapter = make_adapter(card, data_root)
        load = adapter.load

        def load_shuffled(split: str) -> list[Any]:
            samples = load(split)
            if split != card.eval_split:
                return samples
            n = len(samples)
            return [replace(s, media=samples[(i + n // 2) % n].media) for i, s in enumerate(samples)]

        adapter.load = load_shuffled
        return adapter

    return make


if __name__ == "__main__":
    task.make_adapter = shuffling(task.make_adapter)  # type: ignore[assignment]
    sys.exit(main(["run", *sys.argv[1:]]))
