"""Build the OpenFlamingo parity fixtures under tests/fixtures/parity/ with the reference implementation.

Needs open-flamingo 2.0.1 (installed with --no-deps, never imported by flamingo_eval or the tests):

    PYTHONPATH=.cache/openflamingo-ref HF_HUB_OFFLINE=1 .venv/bin/python -m tools.make_parity_fixtures

Per LM family (OPT, LLaMA, MPT with HF ``MptForCausalLM`` names, MPT with MosaicGPT names, GPT-NeoX) it
writes the real release layout, tiny: ``lm/`` (HF config + ``model.safetensors`` + a word-level tokenizer),
``checkpoint.pt`` (OpenFlamingo's trainable-parameter filter of the state dict, NON-zero gates) and shares
``vision/`` (a tiny open_clip ViT config + full CLIP weights) and ``images/``. The model is built with
OpenFlamingo's ``create_model_and_transforms`` (tokenizer special tokens, embedding resize), the perceiver and
cross-attention blocks are swapped for smaller ones of the same classes (the release sizes would make the
fixtures megabytes each), then a FRESH model is built the same way and loaded with OpenFlamingo's own
``load_state_dict(strict=False)``; its outputs are recorded in ``expected.json`` / ``expected.safetensors``:
logits of a left-padded batch (several images per prompt, unequal lengths), greedy and 3-beam generations
(``Flamingo.generate``: eos = ``<|endofchunk|>``, length_penalty 0) and rank scores (mean candidate log-prob
from a full forward of prompt + candidate).

MosaicGPT: OpenFlamingo would load it with remote code that is not available offline. The reference runs the
equivalent HF ``MptForCausalLM`` (no QK LayerNorm); the fixture's ``lm/`` stores the same weights under
MosaicGPT names with a ``mosaic_gpt`` config.json, and the checkpoint has no ``lm_head`` copy (as released).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "parity"
VIT_NAME = "parity-vit-tiny"
VIT_CFG = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16, "mlp_ratio": 2},  # noqa: E501
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
BRIDGE: dict[str, Any] = {"perceiver_depth": 2, "perceiver_heads": 2, "perceiver_dim_head": 16, "num_latents": 8,
          "perceiver_ff_mult": 2, "xattn_heads": 2, "xattn_dim_head": 16, "xattn_ff_mult": 2}
WORDS = ("Output Question Short answer what color shape is the a an of on in and red blue green yellow dog cat "
         "bird horse man woman sitting running image photo text only prefix big small two three it this").split()
PUNCT = [":", "?", ".", ",", "'"]

# (family, HF config, cross_attn_every_n_layers, tokenizer kind, LM vocab relative to len(tokenizer))
FAMILIES: dict[str, dict[str, Any]] = {
    "opt": {"config": {"model_type": "opt", "hidden_size": 32, "num_hidden_layers": 4, "ffn_dim": 64,
                       "num_attention_heads": 4, "max_position_embeddings": 96, "word_embed_proj_dim": 32,
                       "do_layer_norm_before": True, "enable_bias": True},
            "n": 2, "tok": "bos_pad", "vocab_delta": 0},  # grows by the 2 Flamingo tokens (tied head; has a pad token)
    "llama": {"config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
                         "tie_word_embeddings": False, "rms_norm_eps": 1e-5},
              "n": 4, "tok": "bos", "vocab_delta": 5},  # untied head: the LM vocab shrinks (no invented rows)
    "mpt": {"config": {"model_type": "mpt", "d_model": 32, "n_heads": 4, "n_layers": 2, "expansion_ratio": 4,
                       "max_seq_len": 128, "attn_config": {"alibi": True, "alibi_bias_max": 8}},
            "n": 1, "tok": "plain", "vocab_delta": 8},  # shrinks, like MPT-7B's 50432 -> 50280
    "mosaic_gpt": {"config": {"model_type": "mpt", "d_model": 32, "n_heads": 4, "n_layers": 2, "expansion_ratio": 4,
                              "max_seq_len": 128, "attn_config": {"alibi": True, "alibi_bias_max": 8}},
                   "n": 2, "tok": "plain", "vocab_delta": 8},
    "gpt_neox": {"config": {"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 4,
                            "num_attention_heads": 4, "intermediate_size": 64, "rotary_pct": 0.5,
                            "max_position_embeddings": 128, "use_parallel_residual": True,
                            "tie_word_embeddings": False},
                 "n": 2, "tok": "plain", "vocab_delta": 6},  # untied head shrinks, like RedPajama-3B 50432 -> 50280
}

LOGIT_PROMPTS = [
    ("<image>Output: a red dog<|endofchunk|><image>Output: a blue cat<|endofchunk|><image>Output:", [0, 1, 2]),
    ("<image>Question: what color is it? Short answer: red<|endofchunk|><image>Question: what shape? Short answer:",
     [3, 4]),
    ("a text only prefix <image>Output: two", [1]),
]
GEN_PROMPTS = LOGIT_PROMPTS + [("<image>Output: a man sitting on a horse<|endofchunk|><image>Output:", [4, 0])]
RANK_PROMPTS = [LOGIT_PROMPTS[0], LOGIT_PROMPTS[1]]
CANDIDATES = ["red", "blue cat", "a small bird"]
MAX_NEW = 6
EOC_STDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0, 6.0)


def make_tokenizer(kind: str, path: Path) -> int:
    """A word-level HF tokenizer dir; ``bos*`` prepend <s> (LLaMA/OPT style), ``*pad`` define a pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] + (["<pad>"] if kind.endswith("pad") else [])
    vocab = {w: i for i, w in enumerate(specials + WORDS + PUNCT)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind.startswith("bos"):
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", vocab["<s>"])])
    extra = {"pad_token": "<pad>"} if kind.endswith("pad") else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", **extra)
    fast.save_pretrained(path)
    return len(vocab)


def make_vision() -> Path:
    import open_clip
    from safetensors.torch import save_file

    d = OUT / "vision"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{VIT_NAME}.json").write_text(json.dumps(VIT_CFG, indent=1))
    open_clip.add_model_config(d / f"{VIT_NAME}.json")
    torch.manual_seed(0)
    clip = open_clip.create_model(VIT_NAME, pretrained=None)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(d / "open_clip.safetensors"))
    from PIL import Image

    g = torch.Generator().manual_seed(1)
    (OUT / "images").mkdir(exist_ok=True)
    for i, (w, h) in enumerate([(40, 36), (32, 32), (48, 40), (36, 44), (32, 40)]):
        px = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(px).save(OUT / "images" / f"img{i}.png")
    return d


def build_lm(fam: str, spec: dict[str, Any], base_vocab: int, hf_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    conf = dict(spec["config"])
    model_type = conf.pop("model_type")
    cfg = AutoConfig.for_model(model_type, vocab_size=base_vocab + spec["vocab_delta"], **conf)
    torch.manual_seed(10 + len(fam))
    lm = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():  # larger-than-default weights so every sublayer matters in the comparison
        for name, p in lm.named_parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
            elif "norm" in name or "ln" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
        head = lm.get_output_embeddings()
        if spec["vocab_delta"] > 0 and head.weight is not lm.get_input_embeddings().weight:
            head.weight[base_vocab] *= 3.0  # <|endofchunk|> (first added token) keeps the LM's row here
            head.weight[base_vocab + 1 :] *= 0.1  # <image>, <PAD>: rarely generated (see EOC_STDS)
    lm.save_pretrained(hf_dir)


def mosaic_dir(hf_dir: Path, out: Path, spec: dict[str, Any]) -> None:
    """The HF MPT weights under MosaicGPT names + a flat ``mosaic_gpt`` config (what mpt-1b-redpajama ships)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(hf_dir / "model.safetensors"))
    ren = {".norm_1.": ".ln_1.", ".norm_2.": ".ln_2.", ".ffn.up_proj.": ".mlp.mlp_up.", ".ffn.down_proj.": ".mlp.mlp_down.",  # noqa: E501
           "transformer.norm_f.": "transformer.ln_f."}
    new = {}
    for k, v in state.items():
        if k == "lm_head.weight":
            continue
        for a, b in ren.items():
            k = k.replace(a, b)
        new[k] = v.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(new, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf = json.loads((hf_dir / "config.json").read_text())
    conf = {"architectures": ["MosaicGPT"], "model_type": "mosaic_gpt", "d_model": hf["d_model"],
            "n_heads": hf["n_heads"], "n_layers": hf["n_layers"], "mlp_ratio": hf["expansion_ratio"],
            "max_seq_len": hf["max_seq_len"], "vocab_size": hf["vocab_size"], "alibi": True, "alibi_bias_max": 8,
            "attn_qk_ln": False, "attn_clip_qkv": None, "softmax_scale": None, "no_bias": True,
            "layer_norm_epsilon": hf["layer_norm_epsilon"], "tokenizer_name": "./"}
    (out / "config.json").write_text(json.dumps(conf, indent=1))
    for f in hf_dir.iterdir():
        if "token" in f.name:
            shutil.copy(f, out / f.name)


def build_openflamingo(lm_dir: Path, vision_dir: Path, n: int) -> tuple[Any, Any, Any]:
    """``create_model_and_transforms`` + smaller bridge modules of the reference classes."""
    from open_flamingo import create_model_and_transforms
    from open_flamingo.src.helpers import GatedCrossAttentionBlock, PerceiverResampler

    model, processor, tok = create_model_and_transforms(
        VIT_NAME, str(vision_dir / "open_clip.safetensors"), str(lm_dir), str(lm_dir), cross_attn_every_n_layers=n)
    vis, lang = model.vis_dim, model.lang_encoder
    dim = model.lang_dim
    model.perceiver = PerceiverResampler(dim=vis, depth=BRIDGE["perceiver_depth"], dim_head=BRIDGE["perceiver_dim_head"],  # noqa: E501
                                         heads=BRIDGE["perceiver_heads"], num_latents=BRIDGE["num_latents"],
                                         ff_mult=BRIDGE["perceiver_ff_mult"])
    lang.gated_cross_attn_layers = torch.nn.ModuleList([
        GatedCrossAttentionBlock(dim=dim, dim_visual=vis, dim_head=BRIDGE["xattn_dim_head"],
                                 heads=BRIDGE["xattn_heads"], ff_mult=BRIDGE["xattn_ff_mult"])
        if (i + 1) % n == 0 else None for i in range(len(lang.old_decoder_blocks))])  # type: ignore[misc]  # None: no block
    lang.init_flamingo_layers(False)
    model.requires_grad_(False)  # trainable set exactly as create_model_and_transforms leaves it
    model.perceiver.requires_grad_(True)
    lang.gated_cross_attn_layers.requires_grad_(True)
    lang.get_input_embeddings().requires_grad_(True)
    return model.eval(), processor, tok


def randomize_bridge(model: Any, eoc: int, eoc_std: float) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for mod in [model.perceiver, model.lang_encoder.gated_cross_attn_layers]:
            for name, p in mod.named_parameters():
                if name.endswith("_gate"):
                    p.copy_(0.5 + torch.rand(p.shape, generator=g))  # NON-zero gates: images matter
                elif p.ndim == 1:
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
        emb = model.lang_encoder.get_input_embeddings().weight
        emb[eoc] = eoc_std * torch.randn(emb.shape[1], generator=g)  # <|endofchunk|> likely enough to exercise stopping
        head = model.lang_encoder.get_output_embeddings()
        names = [n for n, m in model.lang_encoder.named_modules() if m is head]
        if head is not None and head.weight is not emb and "embed" in names[0]:  # saved in checkpoint.pt (NeoX)
            head.weight[eoc] = eoc_std * torch.randn(head.weight.shape[1], generator=g)


def vision_x(processor: Any, rows: list[list[int]]) -> torch.Tensor:
    """(B, T_img, 1, 3, H, W), rows with fewer images zero-padded (as OpenFlamingo's eval code does)."""
    from PIL import Image

    m = max(len(r) for r in rows)
    out = torch.zeros(len(rows), m, 1, 3, 32, 32)
    for b, r in enumerate(rows):
        for j, i in enumerate(r):
            out[b, j, 0] = processor(Image.open(OUT / "images" / f"img{i}.png").convert("RGB"))
    return out


def record(model: Any, processor: Any, tok: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tok.padding_side = "left"
    eoc = tok.encode("<|endofchunk|>")[-1]
    enc = tok([p for p, _ in LOGIT_PROMPTS], padding="longest", return_tensors="pt")
    with torch.no_grad():
        logits = model(vision_x(processor, [m for _, m in LOGIT_PROMPTS]), enc["input_ids"],
                       attention_mask=enc["attention_mask"]).logits
    tensors = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "logits": logits.float()}
    gens: dict[str, list[dict[str, Any]]] = {}
    enc = tok([p for p, _ in GEN_PROMPTS], padding="longest", return_tensors="pt")
    vx = vision_x(processor, [m for _, m in GEN_PROMPTS])
    for label, beams in (("greedy", 1), ("beam3", 3)):
        with torch.no_grad():
            out = model.generate(vx, enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=MAX_NEW,
                                 num_beams=beams, length_penalty=0.0, do_sample=False, pad_token_id=tok.pad_token_id)
        rows = []
        for seq in out[:, enc["input_ids"].shape[1]:].tolist():
            ids = seq[: seq.index(eoc) + 1] if eoc in seq else seq
            text = tok.decode([t for t in ids if t != eoc], skip_special_tokens=True)
            rows.append({"ids": ids, "text": text, "stopped": eoc in ids})
        gens[label] = rows
    ranks = []
    for prompt, media in RANK_PROMPTS:
        ctx = tok(prompt)["input_ids"]
        scores = []
        for cand in CANDIDATES:
            cid = tok(cand, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cid])
            with torch.no_grad():
                lg = model(vision_x(processor, [media]), ids, attention_mask=torch.ones_like(ids)).logits
            lp = lg[0, len(ctx) - 1 : -1].float().log_softmax(-1).gather(-1, torch.tensor(cid)[:, None])
            scores.append(lp.mean().item())
        ranks.append(scores)
    meta = {"logit_prompts": LOGIT_PROMPTS, "gen_prompts": GEN_PROMPTS, "rank_prompts": RANK_PROMPTS,
            "candidates": CANDIDATES, "max_new_tokens": MAX_NEW, "generations": gens, "rank_scores": ranks,
            "eoc_token_id": eoc, "media_token_id": tok.encode("<image>")[-1], "tokenizer_len": len(tok)}
    return meta, tensors


def make_family(fam: str, spec: dict[str, Any], vision_dir: Path, tmp: Path) -> None:
    import types

    sys.modules.setdefault("wandb", types.ModuleType("wandb"))  # train_utils imports it; the filter never uses it
    from open_flamingo.train.train_utils import filter_state_dict_to_trainable
    from safetensors.torch import save_file

    d = OUT / fam
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    hf_dir = tmp / f"{fam}-hf"
    base = make_tokenizer(spec["tok"], hf_dir)
    build_lm(fam, spec, base, hf_dir)
    for std in EOC_STDS:  # the first <|endofchunk|> scale: some (not all) generations stop, none emits <image>
        torch.manual_seed(1)
        model, processor, tok = build_openflamingo(hf_dir, vision_dir, spec["n"])
        randomize_bridge(model, tok.encode("<|endofchunk|>")[-1], std)
        gens = record(model, processor, tok)[0]["generations"]
        stops = [sum(r["stopped"] for r in rows) for rows in gens.values()]
        media_id = tok.encode("<image>")[-1]  # a generated <image> hits an OpenFlamingo defect (docs/openflamingo.md)
        if all(0 < n < len(GEN_PROMPTS) for n in stops) and not any(
                media_id in r["ids"] for rows in gens.values() for r in rows):
            break
    state = filter_state_dict_to_trainable(model, model.state_dict())
    if fam == "gpt_neox":  # released checkpoints (transformers 4) name the head embed_out, so the filter kept it
        head = model.lang_encoder.get_output_embeddings().weight
        state["lang_encoder.embed_out.weight"] = state.pop("lang_encoder.lm_head.weight", head)
    if fam == "mosaic_gpt":  # MosaicGPT has no lm_head (OpenFlamingo-3B's checkpoint.pt carries none)
        state.pop("lang_encoder.lm_head.weight", None)
        mosaic_dir(hf_dir, d / "lm", spec)
    else:
        shutil.copytree(hf_dir, d / "lm")
    (d / "lm" / "generation_config.json").unlink(missing_ok=True)
    torch.save({k: v.clone().contiguous() for k, v in state.items()}, d / "checkpoint.pt")
    # Fresh model, loaded with OpenFlamingo's own loader: this is what the expectations come from.
    torch.manual_seed(2)
    fresh, processor, tok = build_openflamingo(hf_dir, vision_dir, spec["n"])
    result = fresh.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=True), strict=False)
    # strict=False: with transformers 5 the NeoX head is lm_head, so OpenFlamingo silently ignores embed_out
    assert set(result.unexpected_keys) <= {"lang_encoder.embed_out.weight"}, result.unexpected_keys
    for k, v in state.items():
        assert torch.equal(fresh.state_dict()[k.replace("embed_out", "lm_head")], v), k
    meta, tensors = record(fresh, processor, tok)
    meta.update(family=fam, cross_attn_every_n_layers=spec["n"], bridge=BRIDGE, vision_model=VIT_NAME,
                checkpoint_keys=len(state), eoc_std=std)
    (d / "expected.json").write_text(json.dumps(meta, indent=1))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "expected.safetensors"))
    stopped = {k: sum(r["stopped"] for r in v) for k, v in meta["generations"].items()}
    media = any(meta["media_token_id"] in r["ids"] for rows in meta["generations"].values() for r in rows)
    print(f"{fam}: {len(state)} checkpoint keys, eoc_std {std}, emits <image>: {media}, stopped at eoc: {stopped}, "
          f"beam3 {[r['text'] for r in meta['generations']['beam3']]}", flush=True)


def main() -> None:
    import open_flamingo  # noqa: F401  (fail early with a clear message when PYTHONPATH is not set)

    OUT.mkdir(parents=True, exist_ok=True)
    vision_dir = make_vision()
    only = sys.argv[1:] or list(FAMILIES)
    with tempfile.TemporaryDirectory() as tmp:
        for fam in only:
            make_family(fam, FAMILIES[fam], vision_dir, Path(tmp))


if __name__ == "__main__":
    main()
