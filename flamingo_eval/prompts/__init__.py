"""Prompt building: demo samplers, templates and their answer extractors."""

from flamingo_eval.prompts.builder import PromptTooLong, build_prompt, fill
from flamingo_eval.prompts.extractors import extract_caption, extract_identity, extract_vqa
from flamingo_eval.prompts.rices import ClipImageFeatures, RicesSampler
from flamingo_eval.prompts.samplers import (
    ClassBalancedSampler,
    FixedSampler,
    RandomSampler,
    SamplerContext,
    keyed_rng,
    prefix_shuffle,
    query_set,
)

__all__ = ["PromptTooLong", "build_prompt", "fill", "extract_caption", "extract_identity", "extract_vqa",
           "ClassBalancedSampler",
           "ClipImageFeatures", "FixedSampler", "RandomSampler", "RicesSampler", "SamplerContext", "keyed_rng",
           "prefix_shuffle", "query_set"]
