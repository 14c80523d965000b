"""OpenFlamingo's own eval loop on the same-shaped model as tools/bench.py, measured once for the baseline figure.

Needs the reference package (installed with --no-deps, never imported by flamingo_eval):

    PYTHONPATH=.cache/openflamingo-ref .venv/bin/python -m tools.bench_openflamingo [--queries N] [--classes N]

Model: open_clip ViT-B-32 (random) + transformers ``MptForCausalLM`` (d_model 768, 12 layers, 12 heads, ALiBi,
SmolLM2 tokenizer + Flamingo tokens) turned into a Flamingo exactly as ``create_model_and_transforms`` does,
cross-attention every layer, gates set to 0.5. Loops, copied in behaviour from
``open_flamingo/eval/models/open_flamingo.py``: (a) ``Flamingo.generate`` with ``num_beams=3``,
``max_new_tokens=5`` and ``use_cache=True`` forced on (without it MPT re-runs the prompt at every step);
(b) ``get_rank_classifications`` with the context cache: each class scored token by token over the cached
context (transformers 5 caches are mutable objects, so each class gets a deep copy of the context cache, which
is what transformers 4 did implicitly by concatenating tuples). Same prompts as tools/bench.py.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def build_openflamingo():  # type: ignore[no-untyped-def]
    import open_clip
    from open_flamingo.src.flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance
    from transformers import MptConfig, MptForCausalLM

    from flamingo_eval.models.assets import smollm2_dir
    from flamingo_eval.models.build import load_tokenizer

    torch.manual_seed(0)
    clip, _, processor = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    clip.visual.output_tokens = True
    tok = load_tokenizer(str(smollm2_dir()))
    lm = MptForCausalLM(MptConfig(d_model=768, n_heads=12, n_layers=12, expansion_ratio=4, max_seq_len=2048,
                                  vocab_size=len(tok), attn_config={"alibi": True, "alibi_bias_max": 8}))
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("transformer.blocks")  # type: ignore[operator]  # a mixin method added at run time
    lm.resize_token_embeddings(len(tok))
    model = Flamingo(clip, lm, tok.encode("<|endofchunk|>")[-1], tok.encode("<image>")[-1],
                     vis_dim=open_clip.get_model_config("ViT-B-32")["vision_cfg"]["width"], cross_attn_every_n_layers=1)
    for layer in model.lang_encoder.gated_cross_attn_layers:
        layer.attn_gate.data.fill_(0.5)
        layer.ff_gate.data.fill_(0.5)
    return model.eval(), processor, tok


def images_tensor(processor, batch):  # type: ignore[no-untyped-def]
    from flamingo_eval.media import load_image

    m = max(len(x) for x in batch)
    out = None
    for b, paths in enumerate(batch):
        for j, p in enumerate(paths):
            x = processor(load_image(p))
            if out is None:
                out = torch.zeros((len(batch), m, 1) + tuple(x.shape))
            out[b, j, 0] = x
    return out


def run_vqa(model, processor, tok, reqs) -> float:  # type: ignore[no-untyped-def]
    enc = tok([r.prompt.text for r in reqs], padding="longest", return_tensors="pt")
    vision = images_tensor(processor, [r.prompt.media for r in reqs])
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(vision, enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=5,
                       num_beams=3, length_penalty=0.0, use_cache=True)
    return time.perf_counter() - t0


def run_rank(model, processor, tok, reqs, classes) -> float:  # type: ignore[no-untyped-def]
    enc = tok([r.prompt.text for r in reqs], padding="longest", return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    vision = images_tensor(processor, [r.prompt.media for r in reqs])
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.cache_media(input_ids=ids, vision_x=vision)
        pre = model(vision_x=None, lang_x=ids, attention_mask=mask, clear_conditioned_layers=False, use_cache=True)
        for name in classes:
            cls = tok(name, add_special_tokens=False, return_tensors="pt")["input_ids"].repeat(len(reqs), 1)
            pkv = copy.deepcopy(pre.past_key_values)
            logits = []
            for j in range(cls.shape[1]):
                out = model(vision_x=None, lang_x=cls[:, j : j + 1], attention_mask=None,
                            clear_conditioned_layers=False, past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
                logits.append(out.logits)
            lp = torch.cat([pre.logits, *logits], 1).log_softmax(-1)[:, -cls.shape[1] - 1 : -1]
            lp.gather(2, cls[:, :, None]).mean()
        model.uncache_media()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--classes", type=int, default=20, help="classes scored (time extrapolated to 1000)")
    args = ap.parse_args()
    from open_clip import IMAGENET_CLASSNAMES

    from tools.bench import rank_requests, vqa_requests

    model, processor, tok = build_openflamingo()
    tok.padding_side = "left"
    vqa = vqa_requests(args.queries, 32, 3, pool=128)
    t_vqa = run_vqa(model, processor, tok, vqa)
    print(f"(a) OpenFlamingo VQA 32-shot beam 3, batch {args.queries}: {t_vqa:.1f} s "
          f"= {args.queries / t_vqa:.4f} samples/s", flush=True)
    classes = tuple(IMAGENET_CLASSNAMES)
    reqs = rank_requests(args.queries, 8, classes)
    sub = classes[:: len(classes) // args.classes][: args.classes]
    t_one = run_rank(model, processor, tok, reqs, sub[:1])
    t_sub = run_rank(model, processor, tok, reqs, sub)
    total = t_one + (t_sub - t_one) / (len(sub) - 1) * (len(classes) - 1)
    print(f"(b) OpenFlamingo rank 8-shot, {len(sub)} classes measured {t_sub:.1f} s, 1000 classes extrapolated "
          f"{total:.1f} s = {args.queries / total:.5f} samples/s", flush=True)


if __name__ == "__main__":
    main()
