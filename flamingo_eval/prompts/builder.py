"""Interleaved prompt building: demos + query -> text with ``<image>`` slots and the ordered media.

Template fields come from ``Sample.fields``; ``{answer}`` is the sample's first reference. The Flamingo
0-shot rule (switchable via ``zero_shot_text_demos``): with k = 0, that many demos are shown as text only
(``<image>`` removed, no media). Too long for the model context: demos are dropped from the far end
(the query is never truncated) and the count is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.types import IMAGE_TOKEN, InterleavedPrompt, Sample


def fill(template: str, sample: Sample, with_answer: bool) -> str:
    values: dict[str, Any] = dict(sample.fields)
    if with_answer:
        values["answer"] = sample.references[0] if sample.references else ""
    try:
        return template.format(**values)
    except KeyError as e:
        raise UserError(f"template field {e} missing from sample {sample.id}; fields: {sorted(values)}") from None


def build_prompt(template: Any, demos: Sequence[Sample], query: Sample, *, text_only_demos: bool = False,
                 count_tokens: Callable[[str], int] | None = None, max_tokens: int | None = None,
                 prefix: str = "") -> InterleavedPrompt:
    """Build one prompt. ``template`` has ``demo``, ``query``, ``separator`` (after each demo), ``prefix``."""
    demo_texts: list[str] = []
    demo_media: list[tuple[str, ...]] = []
    for d in demos:
        text = fill(template.demo, d, with_answer=True)
        if text_only_demos:
            text, media = text.replace(IMAGE_TOKEN, ""), tuple[str, ...]()
        else:
            media = d.media[: text.count(IMAGE_TOKEN)]
        demo_texts.append(text + template.separator)
        demo_media.append(tuple(media))
    query_text = fill(template.query, query, with_answer=False)
    head = prefix + template.prefix
    kept = len(demos)
    if count_tokens is not None and max_tokens is not None:
        budget = max_tokens - count_tokens(head + query_text)
        while kept > 0 and count_tokens("".join(demo_texts[:kept])) > budget:
            kept -= 1
    text = head + "".join(demo_texts[:kept]) + query_text
    media = tuple(m for ms in demo_media[:kept] for m in ms) + tuple(query.media[: query_text.count(IMAGE_TOKEN)])
    return InterleavedPrompt(text=text, media=media, demo_ids=tuple(d.id for d in demos[:kept]),
                             dropped_demos=len(demos) - kept)
