"""Benchmark adapters (one module per format family); importing this registers them."""

from flamingo_eval.benchmarks.base import Adapter, check_unique
from flamingo_eval.benchmarks.vqa import EasyVQAAdapter, VQAAdapter, read_json

__all__ = ["Adapter", "check_unique", "EasyVQAAdapter", "VQAAdapter", "read_json"]
