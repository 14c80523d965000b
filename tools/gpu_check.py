"""The Python half of ``tools/gpu_check.sh``: machine facts, the OpenFlamingo-3B-shaped bench, the report.

    python -m tools.gpu_check env    --out DIR [--dry-run]    # versions, GPU, a measured bf16 matmul peak
    python -m tools.gpu_check bench  --out DIR [--dry-run] [--budget-s S]
    python -m tools.gpu_check report --out DIR                # + gpu-tests.xml, stages.txt -> gpu_check.md

Every stage adds its part to ``DIR/gpu_check.json`` as soon as it has it, so a stage that fails or runs out
of time leaves the others' numbers in place.

Bench model (random weights, bf16 on CUDA): open_clip ViT-L/14 (224 px, 256 patch tokens of width 1024) + a
24-layer 2048-wide MPT (16 heads, ALiBi; the SmolLM2 tokenizer's ~49k vocabulary stands in for MPT-1B's
50k), a gated cross-attention block before every layer, perceiver depth 6 with 64 latents, gates 0.5:
the shapes of OpenFlamingo-3B. Requests: OpenFlamingo VQA prompts with 32 random demos per query from a
128-image pool, batch 8, beam 3, 5 new tokens. Rows:

* ``engine_cold``: the engine with an empty latent cache (every distinct image encoded once);
* ``engine_steady``: the demo pool already encoded (the state of a long run), each query's image not;
* ``reference``: ``models/reference.py`` (OpenFlamingo's loop) on the first queries.

Numbers: samples/s; seconds per phase (vision, prefill = media K/V projection + LM prompt pass, decode);
prefill MFU = useful prefill FLOPs / prefill seconds / bf16 peak, FLOPs counted from the shapes
(:func:`prefill_flops`: 2 x weights per real token, causal attention 2*D*L^2 per layer, cross-attention to
N latents, media K/V projection per image, the head at the last position); vision MFU from
``torch.utils.flop_counter`` on one image; decode tokens/s = rows x steps of the decode forwards / decode
seconds; peak GPU memory. Peak: the measured 8192^3 bf16 matmul rate (env stage), else 790 TFLOP/s (the
H200 figure measured on these machines). ``--dry-run``: the same code on the CPU with ViT-S-32 + a
2-layer MPT, 4 shots, a handful of queries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tools.gpu_check_report import json_path, log, report_stage, update  # noqa: E402

NOMINAL_PEAK = 790e12
"""bf16 dense matmul FLOP/s of an H200 as measured on these machines (8192^3 products)."""
NOT_NEEDED = ("pycocoevalcap", "nltk", "gguf", "inflection", "av", "easy_vqa")


@dataclass
class Spec:
    vision: dict[str, Any]
    lm: dict[str, Any]
    flamingo: dict[str, Any] = field(default_factory=lambda: {"cross_attn_every_n_layers": 1})
    shots: int = 32
    pool: int = 128
    queries: int = 32
    ref_queries: int = 8
    batch: int = 8
    beams: int = 3
    new_tokens: int = 5
    image_px: int = 224


MPT = {"model_type": "mpt", "expansion_ratio": 4, "max_seq_len": 2048,
       "attn_config": {"alibi": True, "alibi_bias_max": 8},
       "no_bias": True, "initializer_range": 0.02}
FULL = Spec(vision={"name": "open_clip", "options": {"model_name": "ViT-L-14", "pretrained": None}},
            lm={**MPT, "d_model": 2048, "n_heads": 16, "n_layers": 24})
DRY = Spec(vision={"name": "open_clip", "options": {"model_name": "ViT-S-32", "pretrained": None}},
           lm={**MPT, "d_model": 64, "n_heads": 4, "n_layers": 2},
           flamingo={"cross_attn_every_n_layers": 1, "perceiver_depth": 1, "num_latents": 8, "perceiver_heads": 2,
                     "perceiver_dim_head": 16, "xattn_heads": 2, "xattn_dim_head": 16},
           shots=4, pool=8, queries=4, ref_queries=2, batch=2, new_tokens=3, image_px=64)


def forbid_unneeded_imports() -> None:
    """The check must run where the data-only dependencies are absent: importing one is an error."""
    import importlib.abc

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name.split(".")[0] in NOT_NEEDED:
                raise ImportError(f"{name} must not be imported by the GPU check")
            return None

    sys.meta_path.insert(0, Forbid())


# ---------------------------------------------------------------------------------------------- env
def env_stage(out: Path, dry: bool) -> int:
    import importlib.metadata as md

    import torch

    from flamingo_eval.models.decoders import base

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "dry_run": dry,
                            "cuda_available": torch.cuda.is_available()}
    for pkg in ("transformers", "accelerate", "torchvision", "open_clip_torch", "hydra-core", "omegaconf"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda)
        x = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16)
        info["fp32_logits_kernel"] = "mm out_dtype" if base._mm_fp32_out(x, w) is not None else "upcast weights"
        info["matmul_peak_tflops"] = round(matmul_peak() / 1e12, 1)
    update(out, "env", info)
    log(json.dumps(info))
    return 0 if (dry or torch.cuda.is_available()) else 1


def matmul_peak(n: int = 8192, reps: int = 10) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- bench data
def make_images(root: Path, n: int, px: int) -> list[str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"img{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8)).save(p, compress_level=1)
        paths.append(str(p))
    return paths


def vqa_requests(images: list[str], spec: Spec, seed: int = 0) -> list[Any]:
    """OpenFlamingo VQA prompts: ``spec.shots`` random demos per query from the pool, the query's own image."""
    from flamingo_eval.types import GenerateRequest, InterleavedPrompt

    words = ["red", "blue", "two", "yes", "no", "dog", "table", "left", "tennis", "kitchen", "white", "three"]
    out = []
    for q in range(spec.queries):
        rng = random.Random(f"gpu-check/{seed}/{q}")
        demos = rng.sample(range(spec.pool), spec.shots)
        text = "".join(f"<image>Question:What is the {words[d % 12]} thing in picture {d}? Short answer:"
                       f"{words[(d * 7) % 12]}<|endofchunk|>" for d in demos)
        prompt = InterleavedPrompt(text + f"<image>Question:What is in picture {q}? Short answer:",
                                   tuple(images[d] for d in demos) + (images[spec.pool + q],))
        out.append(GenerateRequest(prompt, max_new_tokens=spec.new_tokens, num_beams=spec.beams))
    return out


def build(spec: Spec, device: str) -> Any:
    from flamingo_eval.config import LMCfg, ModelCfg, VisionCfg
    from flamingo_eval.models.build import build_model

    tok = os.environ.get("FLAMINGO_EVAL_TOKENIZER", "smollm2")
    cfg = ModelCfg(name="gpu-check-of3b-shape", vision=VisionCfg(spec.vision["name"], dict(spec.vision["options"])),
                   lm=LMCfg(source="random", tokenizer=tok, config=dict(spec.lm)), flamingo=dict(spec.flamingo),
                   init="random", init_gate=0.5, precision="auto", device=device, batch_size=spec.batch)
    return build_model(cfg)


# ---------------------------------------------------------------------------------------------- FLOPs
def prefill_flops(m: Any, reqs: list[Any]) -> float:
    """Useful FLOPs of the prompts' prefill (real tokens only; multiply-add = 2 FLOPs)."""
    from torch import nn

    model, dec = m.model, m.model.lang

    def lin(mods: list[Any]) -> int:
        return sum(2 * x.weight.numel() for mod in mods for x in mod.modules() if isinstance(x, nn.Linear))

    xblocks = list(model.xattn.values())
    n_lat = model.perceiver.latents.shape[0]
    inner = model.cfg.xattn_heads * model.cfg.xattn_dim_head
    per_token = lin(list(dec.blocks)) + sum(lin([b.attn.to_q, b.attn.to_out, b.ff]) for b in xblocks)
    per_image = sum(2 * b.attn.to_kv.weight.numel() for b in xblocks) * n_lat
    d, layers = dec.hidden_size, len(dec.blocks)
    total = 0.0
    for r in reqs:
        n = len(m._encode(r.prompt.text))
        total += (n * per_token + layers * 2 * d * n * n + len(xblocks) * 4 * n * n_lat * inner
                  + len(r.prompt.media) * per_image + 2 * d * dec.vocab_size)
    return total


def vision_flops_per_image(m: Any, image: str) -> float:
    """FLOPs of encoding one image (vision tower + perceiver), counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    px = m._to_vision(m._pixels(image))  # (1, 3, H, W): an image is one frame
    with torch.no_grad(), FlopCounterMode(display=False) as fc:  # params are frozen: no autograd hooks
        m.model.encode_images(px)
    return float(fc.get_total_flops())


# ---------------------------------------------------------------------------------------------- bench rows
class DecodeCounter:
    """Counts rows of single-token forwards (decode steps) through the model."""

    def __init__(self, model: Any) -> None:
        self.rows = 0
        real = model.forward

        def forward(input_ids: Any, *a: Any, **kw: Any) -> Any:
            if input_ids.shape[1] == 1:
                self.rows += input_ids.shape[0]
            return real(input_ids, *a, **kw)

        model.forward = forward  # type: ignore[method-assign]


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(m: Any, fn: Any, reqs: list[Any], counter: DecodeCounter) -> tuple[list[str], dict[str, Any]]:
    import torch

    sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    snap, enc0, counter.rows = m.timer.snapshot(), m.latents.encodes, 0
    t0 = time.perf_counter()
    outs = fn(reqs)
    sync()
    dt = time.perf_counter() - t0
    row: dict[str, Any] = {"queries": len(reqs), "seconds": round(dt, 3), "samples_per_s": round(len(reqs) / dt, 3),
                           "decode_tokens": counter.rows, "vision_encodes": m.latents.encodes - enc0}
    if torch.cuda.is_available():
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    phases = m.timer.since(snap)
    if phases:
        row["phases"] = phases
        if phases.get("decode"):
            row["decode_tokens_per_s"] = round(counter.rows / phases["decode"], 1)
    return outs, row


def bench_stage(out: Path, dry: bool, budget: float) -> int:
    import torch

    start = time.perf_counter()
    spec, device = (DRY, "cpu") if dry else (FULL, "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        update(out, "bench", {"error": "no CUDA device"})
        return 1
    res: dict[str, Any] = {"spec": asdict(spec), "device": device, "runs": {}, "errors": {}}

    def save() -> None:
        update(out, "bench", res)

    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    images = make_images(root, spec.pool + spec.queries, spec.image_px)
    reqs = vqa_requests(images, spec)
    t0 = time.perf_counter()
    m = build(spec, device)
    m.model.requires_grad_(False)  # inference only (and torch's FLOP counter hooks autograd otherwise)
    res["build_s"] = round(time.perf_counter() - t0, 1)
    res["model"] = {"dtype": m.precision, "params_total_m": round(sum(p.numel() for p in m.model.parameters()) / 1e6),
                    "params_lm_m": round(sum(p.numel() for p in m.model.lang.parameters()) / 1e6),
                    "params_vision_m": round(sum(p.numel() for p in m.model.vision_encoder.parameters()) / 1e6),
                    "vocab": m.model.lang.vocab_size}
    log(f"built in {res['build_s']} s: {res['model']}")
    save()
    counter = DecodeCounter(m.model)
    peak = (json.loads(json_path(out).read_text()).get("env", {}).get("matmul_peak_tflops") or 0) * 1e12
    res["peak_flops"] = peak or NOMINAL_PEAK
    res["peak_source"] = "measured 8192^3 bf16 matmul" if peak else "nominal H200 790 TFLOP/s"
    flops = prefill_flops(m, reqs)
    res["prefill_gflop"] = round(flops / 1e9, 3)
    res["vision_gflop_per_image"] = round(vision_flops_per_image(m, images[0]) / 1e9, 2)

    rows = bench_rows(m, spec, reqs)
    preds: dict[str, list[str]] = {}
    for name, setup, model, rq in rows:
        left = budget - (time.perf_counter() - start)
        if left < (30 if not dry else 1):
            res["errors"][name] = f"skipped: {left:.0f} s left of the {budget:.0f} s time box"
            continue
        log(f"{name}: {len(rq)} queries ({left:.0f} s left)")
        try:
            setup()
            preds[name], res["runs"][name] = measure(model, model.generate, rq, counter)
            finish_row(res, name, flops * len(rq) / len(reqs))
        except Exception as e:  # noqa: BLE001 - one failing row must not lose the others
            res["errors"][name] = f"{type(e).__name__}: {str(e)[:300]}"
            traceback.print_exc()
        log(f"{name}: {res['runs'].get(name) or res['errors'].get(name)}")
        save()
    summarize(res, preds, spec)
    save()
    shutil_rmtree(root)
    return 0 if not res["errors"] else 1


def bench_rows(m: Any, spec: Spec, reqs: list[Any]) -> list[tuple[str, Any, Any, list[Any]]]:
    """(name, setup, model, requests) of each bench row, after one warm-up call (CUDA context, cuBLAS handles,
    kernel selection): the engine with an empty latent cache, with the demo pool encoded, the reference path."""
    from flamingo_eval.models.eval_model import LatentCache
    from flamingo_eval.models.reference import ReferenceEvalModel

    def fresh() -> None:
        m.latents = LatentCache(m.latents.max_bytes, None, m.latent_device)

    fresh()
    m.generate(reqs[:1])
    demos = sorted({p for r in reqs for p in r.prompt.media[:-1]})

    def steady() -> None:
        fresh()
        m._image_latents(demos)

    ref = ReferenceEvalModel(m.model, m.tokenizer, m.preprocess, model_id=m.model_id, fingerprint=m.fingerprint(),
                             batch_size=spec.batch, device=str(m.device), dtype=m.dtype)
    return [("engine_cold", fresh, m, reqs), ("engine_steady", steady, m, reqs),
            ("reference", lambda: None, ref, reqs[: spec.ref_queries])]


def finish_row(res: dict[str, Any], name: str, flops: float) -> None:
    row = res["runs"][name]
    phases = row.get("phases", {})
    if phases.get("prefill"):
        row["prefill_tflops"] = round(flops / phases["prefill"] / 1e12, 1)
        row["prefill_mfu"] = float(f"{flops / phases['prefill'] / res['peak_flops']:.3g}")
    if phases.get("vision") and row["vision_encodes"]:
        achieved = res["vision_gflop_per_image"] * 1e9 * row["vision_encodes"] / phases["vision"]
        row["vision_mfu"] = float(f"{achieved / res['peak_flops']:.3g}")


def summarize(res: dict[str, Any], preds: dict[str, list[str]], spec: Spec) -> None:
    runs = res["runs"]
    ref = runs.get("reference")
    if ref:
        for name in ("engine_cold", "engine_steady"):
            if name in runs:
                runs[name]["speedup_vs_reference"] = round(runs[name]["samples_per_s"] / ref["samples_per_s"], 2)
    if "reference" in preds and "engine_cold" in preds:
        same = sum(a == b for a, b in zip(preds["reference"], preds["engine_cold"]))
        res["reference_agreement"] = f"{same}/{len(preds['reference'])} identical predictions (bf16: batch " \
                                     "shapes differ between the paths, so near-ties may differ)"


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["env", "bench", "report"])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes (what the test suite runs)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="bench: skip rows that would start after this")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    forbid_unneeded_imports()
    if args.stage == "env":
        return env_stage(args.out, args.dry_run)
    if args.stage == "bench":
        return bench_stage(args.out, args.dry_run, args.budget_s)
    return report_stage(args.out)


if __name__ == "__main__":
    sys.exit(main())
