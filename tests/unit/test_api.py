"""``flamingo_eval.api``: every public name imports and is what the package uses; importing it loads no torch."""

from __future__ import annotations

import subprocess
import sys

from flamingo_eval import api
from flamingo_eval.registry import ADAPTERS, DECODERS, EXTRACTORS, METRICS, REQUEST_KINDS, SAMPLERS, VISION

PUBLIC = ("evaluate", "prepare", "Task", "Sample", "EvalModel", "RunRecord", "load_record", "compose_config",
          "build_model", "register_adapter", "register_metric", "register_sampler", "register_extractor",
          "register_request_kind", "register_decoder", "register_vision", "register_architecture", "Architecture")


def test_every_public_name_imports() -> None:
    for name in PUBLIC:
        assert name in api.__all__, name
    missing = [n for n in api.__all__ if not hasattr(api, n)]
    assert not missing, f"api.__all__ names what api does not define: {missing}"
    from flamingo_eval.api import EvalModel, RunRecord, Sample, Task, evaluate, load_record, prepare  # noqa: F401


def test_public_names_are_the_package_objects() -> None:
    from flamingo_eval.models.architecture import register_architecture
    from flamingo_eval.results.records import load_record
    from flamingo_eval.runner import evaluate
    from flamingo_eval.task import Task, prepare

    assert (api.evaluate, api.prepare, api.Task, api.load_record) == (evaluate, prepare, Task, load_record)
    assert api.register_architecture is register_architecture
    pairs = {api.register_adapter: ADAPTERS, api.register_metric: METRICS, api.register_sampler: SAMPLERS,
             api.register_extractor: EXTRACTORS, api.register_request_kind: REQUEST_KINDS,
             api.register_decoder: DECODERS, api.register_vision: VISION}
    for register, registry in pairs.items():
        assert register.__self__ is registry  # type: ignore[attr-defined]


def test_a_metric_registered_through_the_api_is_found_by_name() -> None:
    def factory() -> None:
        return None

    api.register_metric("test_api_metric")(factory)
    try:
        assert METRICS.get("test_api_metric") is factory
    finally:
        METRICS._items.pop("test_api_metric")


def test_importing_the_api_loads_no_torch() -> None:
    code = "import sys, flamingo_eval.api; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
