"""Answer extractors: each template names the one that parses its model output (OpenFlamingo rules)."""

from __future__ import annotations

import re

from flamingo_eval.registry import EXTRACTORS


@EXTRACTORS.register("vqa")
def extract_vqa(text: str) -> str:
    """Cut at the first of Question|Answer|Short, then at the first ', ' (OpenFlamingo VQA post-processing)."""
    text = re.split(r"Question|Answer|Short", text, maxsplit=1)[0]
    return text.split(", ", 1)[0].strip()


@EXTRACTORS.register("caption")
def extract_caption(text: str) -> str:
    """Keep the text before the first 'Output' and drop double quotes."""
    return text.split("Output", 1)[0].replace('"', "").strip()


@EXTRACTORS.register("identity")
def extract_identity(text: str) -> str:
    """The generated text stripped of surrounding whitespace."""
    return text.strip()


@EXTRACTORS.register("vqa_line")
def extract_vqa_line(text: str) -> str:
    """The first line, then the ``vqa`` rule (prompts whose demos end with a newline: the idefics family)."""
    return extract_vqa(text.strip().split("\n", 1)[0])


@EXTRACTORS.register("caption_line")
def extract_caption_line(text: str) -> str:
    """The first line, cut before a following 'Caption', double quotes dropped (the idefics family)."""
    return text.strip().split("\n", 1)[0].split("Caption", 1)[0].replace('"', "").strip()
