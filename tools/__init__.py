"""Maintainer tools: benchmarks, fixture builders, the GPU check, training the mini bridge.

A package run from the checkout, ``python -m tools.NAME [args]`` (``make bench``, ``make bench-scale``,
``make train-mini``, ``tools/gpu_check.sh``); the tools import each other as ``tools.NAME`` and the harness
as ``flamingo_eval`` (installed by ``make install``), never through ``sys.path`` edits.
"""
