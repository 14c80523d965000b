"""GPU-path pieces that can be checked on a CPU: fp32 logits from bf16 weights, kernel choices that keep the
math (dropped causal masks, segment layout memo), precision per device, torchrun with one process, the
latent cache loading disk hits straight onto the model's device, per-phase timers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flamingo_eval import distributed
from flamingo_eval.errors import UserError
from flamingo_eval.models.build import resolve_precision
from flamingo_eval.models.cross_attention import masked_cross_attention_reference, segment_attention
from flamingo_eval.models.decoders.base import build_attn_inputs, lm_logits
from flamingo_eval.models.decoders.layers import attend
from flamingo_eval.models.eval_model import LatentCache
from flamingo_eval.timing import PhaseTimer


def test_lm_logits_are_fp32_whatever_the_weights():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 3, 16, generator=g), torch.randn(50, 16, generator=g), torch.randn(50, generator=g)
    assert torch.equal(lm_logits(x, w, b), F.linear(x, w, b))  # fp32: the plain path, bit for bit
    xb, wb = x.bfloat16(), w.bfloat16()
    got = lm_logits(xb, wb, b.bfloat16())
    assert got.dtype == torch.float32 and got.shape == (2, 3, 50)
    want = F.linear(xb.double(), wb.double(), b.bfloat16().double())  # exact product of the bf16 values
    assert (got.double() - want).abs().max().item() <= 1e-4  # fp32 accumulation
    rounded = F.linear(xb, wb, b.bfloat16()).double()  # what a bf16 head returns
    assert (rounded - want).abs().max().item() > 10 * (got.double() - want).abs().max().item()


@pytest.mark.parametrize("t,s", [(5, 5), (1, 7)])
def test_dropping_a_causal_mask_keeps_the_result(t, s):
    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(2, 4, n, 8, generator=g) for n in (t, s, s))
    attn = build_attn_inputs(torch.ones(2, s, dtype=torch.bool), t)
    assert attn.causal_only
    fast = attend(q, k, v, attn.mask, causal_only=True)
    masked = attend(q, k, v, attn.mask)
    assert (fast - masked).abs().max().item() <= 1e-6  # different SDPA kernels: float noise only
    padded = torch.ones(2, s, dtype=torch.bool)
    padded[0, 0] = False
    assert not build_attn_inputs(padded, t).causal_only  # padding keeps the explicit mask


def test_segment_layout_is_computed_once_per_forward():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 9, 8, generator=g)
    k, v = torch.randn(2, 3, 2, 4, 8, generator=g), torch.randn(2, 3, 2, 4, 8, generator=g)
    idx = torch.tensor([[0, 1, 1, 2, 2, 2, 3, 3, 3], [1, 1, 1, 1, 2, 2, 2, 2, 2]])
    memo: dict = {}
    first = segment_attention(q, k, v, idx, memo)
    assert list(memo) == [("segments", 3)]
    memo[("segments", 3)] = tuple(memo[("segments", 3)])  # a later layer reads the same layout
    again = segment_attention(q, k, v, idx, memo)
    ref = masked_cross_attention_reference(q, k, v, idx)
    assert torch.equal(first, again) and (first - ref).abs().max().item() <= 1e-5


def test_precision_auto_depends_on_the_device():
    assert resolve_precision("auto", "cuda") == torch.bfloat16
    assert resolve_precision("auto", "cpu") == torch.float32
    assert resolve_precision("fp16", "cuda") == torch.float16
    with pytest.raises(UserError, match="model.precision must be auto or one of"):
        resolve_precision("int8", "cuda")


def test_torchrun_with_one_process_opens_no_group(monkeypatch):
    import torch.distributed as dist

    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(k, v)
    d = distributed.init("cuda")
    try:
        assert d.world_size == 1 and d.group is None and not dist.is_initialized()
    finally:
        distributed.shutdown()


def test_each_process_starts_at_its_share_of_the_gpus(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    d = distributed.Dist(rank=5, world_size=6, local_rank=1, local_world_size=2)
    assert distributed.local_device("cuda", d) == "cuda:4" and chosen == [4]
    assert distributed.local_device("cpu", d) == "cpu"
    assert distributed.local_device("cuda", distributed.Dist()) == "cuda"  # one process: left alone


def test_disk_latent_hits_land_on_the_cache_device(tmp_path):
    LatentCache(1 << 20, tmp_path).put("fp/abc", torch.ones(4, 8))
    warm = LatentCache(1 << 20, tmp_path, device="meta")  # "meta" stands in for a GPU: no copy back to the host
    got = warm.get("fp/abc")
    assert got is not None and got.device.type == "meta" and warm.disk_hits == 1
    assert warm.get("fp/abc") is got and warm.disk_hits == 1  # moved once, then served from memory


def test_phase_timer_accumulates_and_reports_deltas():
    synced = []
    t = PhaseTimer(sync=lambda: synced.append(1))
    with t.phase("decode"):
        pass
    start = t.snapshot()
    with t.phase("decode"), t.phase("vision"):
        sum(range(10000))
    got = t.since(start)
    assert set(got) == {"decode", "vision"} and got["decode"] >= got["vision"] >= 0
    assert len(synced) == 6  # before and after each phase: GPU work is charged to the phase that queued it
