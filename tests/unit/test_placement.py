"""model.device_map: layer-range parsing, the devices a torchrun process owns, accelerate's plans on stand-in
devices (stages are positions, so ``["cpu"] * 3`` models three stages on a machine with no GPU)."""

from __future__ import annotations

import pytest
import torch

from flamingo_eval.errors import UserError
from flamingo_eval.models.decoders.llama import LlamaConfig, LlamaDecoder
from flamingo_eval.models.flamingo import Flamingo, FlamingoConfig
from flamingo_eval.models.placement import apply_placement, owned_devices, parse_layer_ranges, plan_placement
from flamingo_eval.models.vision import TinyConvEncoder

CPU = torch.device("cpu")


def small_flamingo(layers: int = 6) -> Flamingo:
    """Layers dominate the size (vocab 128), so budgets decide how they spread."""
    torch.manual_seed(0)
    dec = LlamaDecoder(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    cfg = FlamingoConfig(cross_attn_every_n_layers=2, perceiver_depth=1, perceiver_heads=2, perceiver_dim_head=16,
                         num_latents=8, xattn_heads=2, xattn_dim_head=16)
    return Flamingo(TinyConvEncoder(), dec, cfg, media_token_id=127)


@pytest.mark.parametrize("spec,want", [
    ("0-11,12-23", [range(0, 12), range(12, 24)]),
    (["0-5", "6-6", "7-23"], [range(0, 6), range(6, 7), range(7, 24)]),
    ("0-23", [range(0, 24)]),
])
def test_layer_ranges(spec, want):
    assert parse_layer_ranges(spec, 24) == want


@pytest.mark.parametrize("spec,words", [
    ("0-11,13-23", "must start at layer 12"),
    ("0-11", "cover layers 0-23"),
    ("1-23", "must start at layer 0"),
    ("0-x", "not a layer range"),
    ("0-30", "cover layers 0-23"),
])
def test_bad_layer_ranges_are_one_line(spec, words):
    with pytest.raises(UserError, match=words):
        parse_layer_ranges(spec, 24)


def test_torchrun_processes_share_the_node_gpus():
    # 8 GPUs, 2 processes per node: local rank 1 owns GPUs 4-7 (VLMEvalKit's N/K convention).
    got = owned_devices("cuda", local_rank=1, local_world_size=2, gpu_count=8)
    assert got == [torch.device("cuda", i) for i in range(4, 8)]
    assert owned_devices("cuda", 3, 4, gpu_count=4) == [torch.device("cuda", 3)]
    # under torchrun the CLI hands the model its first GPU (cuda:4): the process still owns its whole share
    assert owned_devices("cuda:4", 1, 2, gpu_count=8) == got
    assert owned_devices("cuda:1", 0, 1, gpu_count=8) == [torch.device("cuda", 1)]  # one process: that GPU
    assert owned_devices("cuda", 0, 1, gpu_count=2) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert owned_devices("cpu", 1, 2, gpu_count=8) == [CPU]
    assert owned_devices("auto", 0, 1, gpu_count=0) == [CPU]
    assert owned_devices("cuda", 0, 2, explicit=["cpu", "cpu"], gpu_count=8) == [CPU, CPU]
    with pytest.raises(UserError, match="8 processes on this node share 4 GPU"):
        owned_devices("cuda", 0, 8, gpu_count=4)
    with pytest.raises(UserError, match="no CUDA device"):
        owned_devices("cuda", 0, 1, gpu_count=0)
    with pytest.raises(UserError, match="not a device name"):
        owned_devices("cuda", explicit=["gpu0"])


def test_explicit_ranges_place_stages_in_device_order():
    m = small_flamingo()
    p = plan_placement(m, "0-1,2-5", [CPU, CPU], torch.float32)
    assert (p.vision, p.perceiver, p.io, p.layers) == (0, 0, 0, (0, 0, 1, 1, 1, 1))
    assert p.describe() == "cpu: vision, perceiver, io, layers 0-1; cpu: layers 2-5"
    with pytest.raises(UserError, match="3 stages but this process owns 2"):
        plan_placement(m, "0-1,2-3,4-5", [CPU, CPU], torch.float32)


def test_balanced_spreads_layers_over_every_stage_in_order():
    p = plan_placement(small_flamingo(), "balanced", [CPU] * 3, torch.float32)
    assert (p.vision, p.perceiver, p.io) == (0, 0, 0)
    assert list(p.layers) == sorted(p.layers) and set(p.layers) == {0, 1, 2}  # monotone: activations go forward


def test_auto_fills_the_first_device_first_and_refuses_what_does_not_fit():
    m = small_flamingo()
    assert plan_placement(m, "auto", [CPU] * 3, torch.float32).layers == (0,) * 6  # plenty of memory: one stage
    # ~0.9 MiB per stage: accelerate keeps room for the largest unit, so layers spill to the next stage.
    p = plan_placement(m, "auto", [CPU] * 3, torch.float32, max_memory="900KiB")
    assert p.layers[0] == 0 and p.layers[-1] > 0 and list(p.layers) == sorted(p.layers)
    # bf16 halves every unit: fewer stages needed for the same budget.
    assert max(plan_placement(m, "auto", [CPU] * 3, torch.bfloat16, max_memory="900KiB").layers) < max(p.layers)
    with pytest.raises(UserError, match="do not fit on cpu, cpu"):
        plan_placement(m, "auto", [CPU] * 2, torch.float32, max_memory="200KiB")
    with pytest.raises(UserError, match="not a size"):
        plan_placement(m, "auto", [CPU], torch.float32, max_memory="lots")


def test_apply_placement_moves_units_and_keeps_tied_weights_shared():
    m = small_flamingo()
    p = plan_placement(m, "0-2,3-5", [CPU, CPU], torch.float32)
    head = m.lang.model.embed_tokens.weight
    apply_placement(m, p)
    assert m.stages is p and m.lang.model.embed_tokens.weight is head  # tied head: still one parameter
    assert m.input_device == CPU and m.latent_device == CPU
