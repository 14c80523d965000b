"""What keeps floats reproducible: shape-fixing settings in the config hash, resumed runs redo whole chunks
(so the model sees the uninterrupted run's batch shapes), and records say which threads, CPU and GPU ran."""

from __future__ import annotations

import json
import platform

from flamingo_eval.config_load import compose_config
from flamingo_eval.provenance import cpu_model, gpu_model, provenance
from flamingo_eval.results.store import RUN_ONLY, config_hash
from flamingo_eval.runner import only_new, whole_chunks
from flamingo_eval.types import Sample

CHUNK = 8  # samples per model call (the batch size)


def _hash(*overrides: str) -> str:
    return config_hash(compose_config("easyvqa", "tiny", list(overrides)))


def test_vision_and_rices_batch_sizes_are_in_the_config_hash():
    base = _hash()
    assert _hash("model.vision_batch_size=4") != base  # fixes the vision forward's shape: may move ulps
    assert _hash("run.rices_batch_size=4") != base
    assert _hash("model.batch_size=3", "run.batch_size=5", "model.latent_cache_mb=8") == base  # run-only
    assert "vision_batch_size" not in RUN_ONLY["model"] and "rices_batch_size" not in RUN_ONLY["run"]


def _samples(n: int) -> list[Sample]:
    return [Sample(id=str(i), media=()) for i in range(n)]


def test_a_resumed_run_redoes_whole_chunks():
    mine = _samples(2 * CHUNK + 5)
    ids = [s.id for s in whole_chunks(mine, [mine[CHUNK + 3], mine[CHUNK + 4]], CHUNK)]
    assert ids == [s.id for s in mine[CHUNK : 2 * CHUNK]]  # the torn chunk, whole and in order
    tail = whole_chunks(mine, mine[2 * CHUNK + 1 :], CHUNK)
    assert [s.id for s in tail] == [s.id for s in mine[2 * CHUNK :]]  # the short last chunk stays short
    assert whole_chunks(mine, [], CHUNK) == [] and len(whole_chunks(mine, mine, CHUNK)) == len(mine)


def test_only_new_lines_reach_the_part_file():
    got: list[tuple[list[str], list[str]]] = []
    sink = only_new(lambda lines, skipped=(): got.append(([x["sample_id"] for x in lines],
                                                            [x["sample_id"] for x in skipped])), _samples(3)[1:])
    sink([{"sample_id": "0"}, {"sample_id": "1"}], [{"sample_id": "2"}, {"sample_id": "0"}])
    assert got == [(["1"], ["2"])]


def test_provenance_names_threads_cpu_and_gpu():
    import torch

    prov = provenance("cmd", device=torch.device("cpu"))
    assert prov["torch_threads"] == torch.get_num_threads() >= 1
    assert prov["cpu_model"] == cpu_model() and isinstance(prov["cpu_model"], str) and prov["cpu_model"]
    assert prov["gpu_model"] is None and gpu_model("cpu") is None and gpu_model(None) is None
    json.dumps(prov)  # plain JSON
    if torch.cuda.is_available():
        assert gpu_model("cuda:0") == torch.cuda.get_device_name(0)
    if platform.system() == "Linux":
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            assert prov["cpu_model"] == names[0]
