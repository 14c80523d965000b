"""IDEFICS row of ``make bench``: our engine vs transformers' own ``IdeficsForVisionText2Text.generate``.

Same random weights on both sides: transformers builds an IDEFICS-shaped model (perceiver, gated cross-attention
every 4 layers, ViT with 224 px / 14 px patches = 257 tokens per image, the SmolLM2 tokenizer plus IDEFICS's two
added tokens), saves it in the hub layout, and our loader reads that directory. Workload: 32-shot VQA (idefics
prompt family over easy-vqa images, random demos per query from a 128-image pool), beam 3, 5 new tokens, ``</s>``
ends, ``<image>``/``<fake_token_around_image>`` banned, fp32 on CPU. transformers gets what its processor would
produce (left-padded ids, pixel values per image slot, the processor's image-attention mask) and runs the whole
batch in one ``generate``. Reported: samples/s of both, the ratio, peak RSS above the phase start, vision-tower
image encodes, and whether the predictions are identical.

    .venv/bin/python -m tools.bench_idefics [--queries N] [--repeats N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from flamingo_eval.types import GenerateRequest, InterleavedPrompt  # noqa: E402
from tools.bench_common import easyvqa, fresh_cache, median_timed, timed  # noqa: E402

IMG = "<fake_token_around_image><image><fake_token_around_image>"
SHAPE: dict[str, Any] = {
         "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
         "cross_layer_interval": 4, "qk_layer_norms": False, "use_resampler": True, "alpha_type": "float",
         "perceiver_config": {"resampler_n_latents": 64, "resampler_depth": 3, "resampler_n_heads": 8,
                              "resampler_head_dim": 48, "qk_layer_norms_perceiver": False, "use_resampler": True},
         "vision_config": {"embed_dim": 384, "image_size": 224, "patch_size": 14, "num_hidden_layers": 6,
                           "num_attention_heads": 6, "intermediate_size": 1536, "hidden_act": "gelu"}}


def make_checkpoint(out: Path) -> Any:
    """A random IDEFICS-shaped ``IdeficsForVisionText2Text`` saved at ``out`` (hub layout); returns it (fp32)."""
    from transformers import AutoTokenizer, IdeficsConfig, IdeficsForVisionText2Text

    from flamingo_eval.models.assets import smollm2_dir

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    base = len(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>"]})
    tok.save_pretrained(out)
    cfg = IdeficsConfig(vocab_size=base, additional_vocab_size=2, pad_token_id=tok.pad_token_id or 0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SHAPE)
    torch.manual_seed(0)
    model = IdeficsForVisionText2Text(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha_cross_attn", "alpha_dense")):
                p.fill_(1.0)  # non-zero gates: the images matter (zero gates let our engine skip the bridge)
    model.save_pretrained(out, max_shard_size="200MB")
    return model


def requests(n: int, shots: int, pool: int = 128, seed: int = 0) -> list[GenerateRequest]:
    qs, answers, imgs, _ = easyvqa()
    head = "Instruction: provide an answer to the question. Use the image to answer.\n"
    out = []
    for i in range(n):
        demos = random.Random(f"bench-idefics/{seed}/{i}").sample(range(pool), shots)
        text = head + "".join(f"{IMG}Question: {qs[d]} Answer: {answers[d]}\n" for d in demos)
        q = pool + i
        prompt = InterleavedPrompt(text + f"{IMG}Question: {qs[q]} Answer:", tuple(imgs[d] for d in demos) + (imgs[q],))
        out.append(GenerateRequest(prompt, max_new_tokens=5, num_beams=3, length_penalty=0.0))
    return out


def hf_inputs(em: Any, reqs: list[GenerateRequest]) -> dict[str, torch.Tensor]:
    """What transformers' IdeficsProcessor would hand to ``generate`` for these prompts (same token ids)."""
    from transformers.models.idefics.processing_idefics import (
        image_attention_mask_for_packed_input_ids,
        incremental_to_binary_attention_mask,
    )

    from flamingo_eval.media import load_image

    ids, valid = em._left_pad([em._encode(r.prompt.text) for r in reqs])
    m = max(len(r.prompt.media) for r in reqs)
    size = em.model.vision_encoder.cfg.image_size
    pixels = torch.zeros(len(reqs), m, 3, size, size)
    for b, r in enumerate(reqs):
        for j, path in enumerate(r.prompt.media):
            pixels[b, j] = em.preprocess(load_image(path))  # type: ignore[arg-type]  # images only
    mask, _ = image_attention_mask_for_packed_input_ids(ids.clone(), em.tokenizer, "pt")
    return {"input_ids": ids, "attention_mask": valid.long(), "pixel_values": pixels,
            "image_attention_mask": incremental_to_binary_attention_mask(mask, "pt", num_classes=m)}


def hf_generate(model: Any, em: Any, reqs: list[GenerateRequest]) -> list[str]:
    batch = hf_inputs(em, reqs)
    eos = em.model.eos_token_id
    out = model.generate(**batch, max_new_tokens=5, num_beams=3, length_penalty=0.0, do_sample=False,
                         bad_words_ids=[[t] for t in em.model.banned_token_ids()], eos_token_id=eos,
                         pad_token_id=em.pad_id)
    texts = []
    for seq in out[:, batch["input_ids"].shape[1]:].tolist():
        seq = seq[: seq.index(eos)] if eos in seq else seq
        texts.append(em._decode(seq, reqs[0].stop))
    return texts


def row(queries: int = 4, repeats: int = 1) -> dict[str, Any]:
    """One measured row (dict of numbers); both sides run the same ``queries`` requests as one batch."""
    from flamingo_eval.config import LMCfg, ModelCfg
    from flamingo_eval.models.build import build_model

    with tempfile.TemporaryDirectory() as tmp:
        hf = make_checkpoint(Path(tmp))
        em: Any = build_model(ModelCfg(name="bench-idefics", architecture="idefics", lm=LMCfg(source="hf", path=tmp),
                                  precision="fp32", device="cpu", batch_size=queries))
    reqs = requests(queries, 32)
    encodes = [0]

    def count(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], _out: Any) -> None:
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        encodes[0] += int(pixels.shape[0]) if pixels is not None else 0

    hook = hf.model.vision_model.register_forward_hook(count, with_kwargs=True)
    fast_out, fast_s, fast_mib = median_timed(lambda: em.generate(reqs), repeats, lambda: fresh_cache(em))
    with torch.inference_mode():
        ref_out, ref_s, ref_mib = timed(lambda: hf_generate(hf, em, reqs))
    hook.remove()
    params = sum(p.numel() for p in hf.parameters()) / 1e6
    return {"n": queries, "params_m": round(params), "fast_s": fast_s, "ref_s": ref_s, "fast_mib": fast_mib,
            "ref_mib": ref_mib, "encodes": em.latents.encodes, "ref_encodes": encodes[0],
            "distinct_images": len({p for r in reqs for p in r.prompt.media}), "identical": fast_out == ref_out,
            "speedup": ref_s / fast_s, "fast_sps": queries / fast_s, "ref_sps": queries / ref_s,
            "predictions": fast_out, "threads": torch.get_num_threads(), "repeats": repeats}


def print_row(r: dict[str, Any]) -> None:
    print(f"IDEFICS-shaped ({r['params_m']}M params), 32-shot VQA beam 3, {r['n']} queries, "
          f"torch threads {r['threads']}")
    print(f"{'':24} {'samples/s':>10} {'seconds':>9} {'peak MiB':>9} {'vision encodes':>15}")
    print(f"{'flamingo-eval engine':24} {r['fast_sps']:10.3f} {r['fast_s']:9.1f} {r['fast_mib']:9.0f} "
          f"{r['encodes']:>8} of {r['distinct_images']}")
    print(f"{'transformers generate':24} {r['ref_sps']:10.4f} {r['ref_s']:9.1f} {r['ref_mib']:9.0f} "
          f"{r['ref_encodes']:>15}")
    print(f"speed-up {r['speedup']:.1f}x; identical predictions: {r['identical']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1, help="engine time = median of this many cold runs")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    r = row(args.queries, args.repeats)
    print_row(r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
