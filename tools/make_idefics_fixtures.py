"""Build the IDEFICS parity fixtures under tests/fixtures/idefics/ with transformers' own IDEFICS.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tools.make_idefics_fixtures [config ...]

For each variant (q/k layer norms on/off, perceiver on/off, ``cross_layer_interval`` 1 and 2, float and vector
gates) it builds a tiny random ``IdeficsForVisionText2Text`` with transformers, saves it in the hub layout
(``config.json``, SHARDED ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``,
``preprocessor_config.json`` and a word-level tokenizer whose added tokens ``<fake_token_around_image>`` and
``<image>`` take the two ``additional_vocab_size`` ids, as in the released models), reloads it with
``from_pretrained`` in fp32 and records in ``expected.json`` / ``expected.safetensors``:

* the processor's pixel values for every test image (checks our preprocessing);
* logits of a left-padded batch, 1-3 images per row, text before the first image, one row with ``</s>`` in the
  middle (transformers' processor cuts image attention there); the image-attention mask comes from
  transformers' own ``image_attention_mask_for_packed_input_ids``;
* greedy and 3-beam ``generate`` (``</s>`` ends, ``<image>``/``<fake_token_around_image>`` banned, length penalty 0);
* rank scores: mean log-prob of each candidate from a full forward of prompt + candidate.

Weights are stored in bf16 (halves the fixture) and upcast exactly to fp32 on both sides. The test suite reads
only these files; transformers' IDEFICS forward never runs there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "idefics"
IMAGES = ROOT / "tests" / "fixtures" / "parity" / "images"
FAKE, IMAGE = "<fake_token_around_image>", "<image>"
IMG = FAKE + IMAGE + FAKE
WORDS = ("Question Answer Caption Output what color shape is the a an of on in and red blue green yellow dog cat "
         "bird horse man woman sitting running image photo text only prefix big small two three it this end "
         "after document yes no").split()
PUNCT = [":", "?", ".", ",", "'"]
BASE: dict[str, Any] = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 128, "alpha_initializer": "zeros",
        "vision_config": {"embed_dim": 16, "image_size": 32, "patch_size": 8, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "resampler-qk-i1": {"num_hidden_layers": 2, "cross_layer_interval": 1, "qk_layer_norms": True,
                        "use_resampler": True,
                        "alpha_type": "float", "perceiver": {"qk_layer_norms_perceiver": True}},
    "resampler-i2-vector": {"num_hidden_layers": 4, "cross_layer_interval": 2, "qk_layer_norms": False,
                            "use_resampler": True, "alpha_type": "vector",
                            "perceiver": {"qk_layer_norms_perceiver": False}},
    "vision-qk-i2": {"num_hidden_layers": 4, "cross_layer_interval": 2, "qk_layer_norms": True, "use_resampler": False,
                     "alpha_type": "float", "perceiver": {}},
    "vision-i1-vector": {"num_hidden_layers": 2, "cross_layer_interval": 1, "qk_layer_norms": False,
                         "use_resampler": False, "alpha_type": "vector", "perceiver": {}},
}
PERCEIVER = {"resampler_n_latents": 4, "resampler_depth": 2, "resampler_n_heads": 2, "resampler_head_dim": 8}
LOGIT_PROMPTS = [
    (f"a text only prefix {IMG}Question: what color is it? Answer: red{IMG}Question: what shape? Answer:", [0, 1]),
    (f"{IMG}Caption: a red dog{IMG}Caption: a blue cat{IMG}Caption:", [2, 3, 4]),
    (f"{IMG}Caption: a bird</s>text after the end of document{IMG}Caption: a", [1, 3]),
    (f"photo of{IMG}Caption: two", [4]),
]
GEN_PROMPTS = LOGIT_PROMPTS + [(f"{IMG}Caption: a man sitting on a horse{IMG}Caption:", [4, 0])]
RANK_PROMPTS = [LOGIT_PROMPTS[0], LOGIT_PROMPTS[1], LOGIT_PROMPTS[2]]
CANDIDATES = ["red", "blue cat", "a small bird", "a small dog"]
MAX_NEW = 6


def make_tokenizer(path: Path) -> int:
    """Word-level tokenizer: <unk> (pad), <s> (BOS, prepended), </s>; the IDEFICS tokens are added last."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>"] + WORDS + PUNCT)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", vocab["<s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": [FAKE, IMAGE]})
    fast.save_pretrained(path)
    return len(vocab)


def hf_config(name: str, base_vocab: int) -> Any:
    from transformers import IdeficsConfig

    v = VARIANTS[name]
    kw = {k: val for k, val in v.items() if k != "perceiver"}
    return IdeficsConfig(vocab_size=base_vocab, additional_vocab_size=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         perceiver_config={**PERCEIVER, **v["perceiver"], "use_resampler": v["use_resampler"]},
                         **{**BASE, **kw})


def randomize(model: Any, seed: int, eos_like: int | None) -> None:
    """Larger-than-default weights (every sublayer matters), NON-zero gates; the ``</s>`` head row is 1.2x
    the row of token ``eos_like`` (where that token would win, generation stops instead)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha_cross_attn", "alpha_dense")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "latents" in name or "class_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
        if eos_like is not None:
            model.lm_head.weight[2] = 1.2 * model.lm_head.weight[eos_like]


def image_processor() -> Any:
    from transformers import IdeficsImageProcessor

    return IdeficsImageProcessor(image_size=BASE["vision_config"]["image_size"])


def pixel_values(proc: Any, i: int) -> torch.Tensor:
    """(3, S, S): transformers' IDEFICS image processor on test image ``i``."""
    from PIL import Image

    out = proc(Image.open(IMAGES / f"img{i}.png").convert("RGB"), return_tensors="pt")
    return (out if isinstance(out, torch.Tensor) else out["pixel_values"])[0]


def inputs(tok: Any, proc: Any, prompts: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (left padded), pixel_values (B, M, 3, S, S) and the processor's image mask."""
    from transformers.models.idefics.processing_idefics import (
        image_attention_mask_for_packed_input_ids,
        incremental_to_binary_attention_mask,
    )

    tok.padding_side = "left"
    enc = tok([p for p, _ in prompts], padding="longest", return_tensors="pt")
    m = max(len(media) for _, media in prompts)
    size = BASE["vision_config"]["image_size"]
    pixels = torch.zeros(len(prompts), m, 3, size, size)
    for b, (_, media) in enumerate(prompts):
        for j, i in enumerate(media):
            pixels[b, j] = pixel_values(proc, i)
    mask, _ = image_attention_mask_for_packed_input_ids(enc["input_ids"].clone(), tok, "pt")
    mask = incremental_to_binary_attention_mask(mask, "pt", num_classes=m)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "pixel_values": pixels,
            "image_attention_mask": mask}


def record(model: Any, tok: Any, proc: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    ids = {t: tok.convert_tokens_to_ids(t) for t in (FAKE, IMAGE)}
    batch = inputs(tok, proc, LOGIT_PROMPTS)
    with torch.no_grad():
        logits = model(**batch).logits
    tensors = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "logits": logits.float(),
               "image_attention_mask": batch["image_attention_mask"].float()}
    tensors["pixels0"] = pixel_values(proc, 0)  # a 40x36 image: resized, aspect ratio not kept
    gens: dict[str, list[dict[str, Any]]] = {}
    batch = inputs(tok, proc, GEN_PROMPTS)
    for label, beams in (("greedy", 1), ("beam3", 3)):
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=MAX_NEW, num_beams=beams, length_penalty=0.0, do_sample=False,
                                 bad_words_ids=[[ids[IMAGE]], [ids[FAKE]]], eos_token_id=tok.eos_token_id,
                                 pad_token_id=0)
        rows = []
        for seq in out[:, batch["input_ids"].shape[1]:].tolist():
            stop = seq.index(tok.eos_token_id) if tok.eos_token_id in seq else len(seq)
            rows.append({"ids": seq[:stop], "text": tok.decode(seq[:stop], skip_special_tokens=True),
                         "stopped": stop < len(seq)})
        gens[label] = rows
    ranks = []
    for prompt, media in RANK_PROMPTS:
        scores = []
        for cand in CANDIDATES:
            one = inputs(tok, proc, [(prompt + " " + cand, media)])
            n = len(tok(cand, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                lg = model(**one).logits[0].float()
            target = one["input_ids"][0, -n:]
            lp = lg[-n - 1 : -1].log_softmax(-1).gather(-1, target[:, None])
            scores.append(lp.mean().item())
        ranks.append(scores)
    meta = {"logit_prompts": LOGIT_PROMPTS, "gen_prompts": GEN_PROMPTS, "rank_prompts": RANK_PROMPTS,
            "candidates": CANDIDATES, "max_new_tokens": MAX_NEW, "generations": gens, "rank_scores": ranks,
            "media_token_id": ids[IMAGE], "fake_token_id": ids[FAKE], "eos_token_id": tok.eos_token_id}
    return meta, tensors


def make_variant(name: str) -> None:
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, IdeficsForVisionText2Text

    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    base_vocab = make_tokenizer(d)
    proc = image_processor()
    proc.save_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)

    def build(eos_like: int | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = IdeficsForVisionText2Text(hf_config(name, base_vocab)).eval()
        randomize(model, seed=len(name), eos_like=eos_like)
        model.to(torch.bfloat16).save_pretrained(d, max_shard_size="40KB")  # bf16 values, SHARDED as released
        fresh = IdeficsForVisionText2Text.from_pretrained(d, dtype=torch.float32).eval()
        return record(fresh, tok, proc)

    meta, tensors = build(None)
    counts: dict[int, int] = {}
    for r in meta["generations"]["greedy"]:
        for t in set(r["ids"]):
            counts[t] = counts.get(t, 0) + 1
    best: tuple[int, int] | None = None  # (score, token): most distinct non-empty outputs among valid choices
    for like in sorted(counts, key=lambda t: (-counts[t], t))[:8]:  # tokens some (not all) rows generate
        meta, _ = build(like)
        stops = [sum(r["stopped"] for r in rows) for rows in meta["generations"].values()]
        texts = [r["text"] for rows in meta["generations"].values() for r in rows if r["text"]]
        score = len(set(texts)) + len(texts)
        if all(0 < s < len(GEN_PROMPTS) for s in stops) and (best is None or score > best[0]):
            best = (score, like)
    assert best is not None, f"{name}: no </s> row makes some but not all generations stop"
    scale = best[1]
    meta, tensors = build(scale)
    (d / "generation_config.json").unlink(missing_ok=True)
    meta.update(variant=name, eos_like=scale, config=VARIANTS[name],
                shards=sorted(p.name for p in d.glob("model-*.safetensors")))
    (d / "expected.json").write_text(json.dumps(meta, indent=1))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "expected.safetensors"))
    print(f"{name}: {len(meta['shards'])} shards, eos like {scale}, stops "
          f"{ {k: sum(r['stopped'] for r in v) for k, v in meta['generations'].items()} }, "
          f"beam3 {[r['text'] for r in meta['generations']['beam3']]}", flush=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or list(VARIANTS):
        make_variant(name)


if __name__ == "__main__":
    main()
