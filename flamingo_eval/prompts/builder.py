"""Interleaved prompt building: demos + query -> text with ``<image>`` slots and the ordered media.

Template fields come from ``Sample.fields``; ``{answer}`` is the sample's first reference. The Flamingo
0-shot rule (switchable via ``zero_shot_text_demos``): with k = 0, that many demos are shown as text only
(``<image>`` removed, no media).

Context budget (docs/protocol.md, "Long prompts"): the prompt's tokens plus ``reserve`` (room for the
answer: ``max_new_tokens`` when generating, the longest candidate when ranking) must fit ``max_tokens``.
When they do not, demos are dropped from the far end — the start of the prompt, farthest from the
query — one at a time until they fit, and the count is recorded (``dropped_demos``). The query is never
truncated: when it does not fit even without demos, :class:`PromptTooLong` is raised and the runner
skips the sample (counted) or stops with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flamingo_eval.errors import UserError
from flamingo_eval.types import IMAGE_TOKEN, InterleavedPrompt, Media, Sample


def fill(template: str, sample: Sample, with_answer: bool) -> str:
    """``template`` with the sample's fields (and its answer when ``with_answer``) filled in."""
    values: dict[str, Any] = dict(sample.fields)
    if with_answer:
        values["answer"] = sample.references[0] if sample.references else ""
    try:
        return template.format(**values)
    except KeyError as e:
        raise UserError(f"template field {e} missing from sample {sample.id}; fields: {sorted(values)}") from None


class PromptTooLong(UserError):
    """The query alone (no demos) plus the reserved answer tokens exceeds the model context."""


def build_prompt(template: Any, demos: Sequence[Sample], query: Sample, *, text_only_demos: bool = False,
                 count_tokens: Callable[[str], int] | None = None, max_tokens: int | None = None,
                 reserve: int = 0, prefix: str = "") -> InterleavedPrompt:
    """Build one prompt. ``template`` has ``demo``, ``query``, ``separator`` (after each demo), ``prefix``.

    Raises:
        PromptTooLong: ``count_tokens(query prompt) + reserve > max_tokens`` with every demo dropped.
    """
    demo_texts: list[str] = []
    demo_media: list[tuple[Media, ...]] = []
    for d in demos:
        text = fill(template.demo, d, with_answer=True)
        if text_only_demos:
            text, media = text.replace(IMAGE_TOKEN, ""), tuple[Media, ...]()
        else:
            media = d.media[: text.count(IMAGE_TOKEN)]
        demo_texts.append(text + template.separator)
        demo_media.append(tuple(media))
    query_text = fill(template.query, query, with_answer=False)
    head = prefix + template.prefix

    def text_from(first: int) -> str:  # the prompt without the ``first`` farthest demos
        return head + "".join(demo_texts[first:]) + query_text

    first = 0
    if count_tokens is not None and max_tokens is not None:
        budget = max_tokens - reserve
        if count_tokens(text_from(0)) > budget:
            alone = count_tokens(text_from(len(demos)))
            if alone > budget:
                raise PromptTooLong(f"sample {query.id}: its prompt without demos is {alone} tokens, + {reserve} "
                                    f"reserved for the answer > model.max_context {max_tokens}")
            first = 1
            while first < len(demos) and count_tokens(text_from(first)) > budget:
                first += 1
    media = tuple(m for ms in demo_media[first:] for m in ms) + tuple(query.media[: query_text.count(IMAGE_TOKEN)])
    return InterleavedPrompt(text=text_from(first), media=media, demo_ids=tuple(d.id for d in demos[first:]),
                             dropped_demos=first)
