"""Train a Flamingo bridge on easy-VQA with the LM and the vision tower frozen (``tools/train_mini.py``).

Trained: the perceiver, the gated cross-attention blocks and the input/output rows of the tokens added for
Flamingo (``<|endofchunk|>``, ``<image>``). Data: easy-VQA's TRAIN split only; a validation split of whole
images is carved from it (never the test split). A training sequence is 1..``max_chunks`` chunks
``<image>Question:{q} Short answer:{a}<|endofchunk|>`` joined by the prompt family's separator -- exactly the
demo format the evaluation builds -- optionally after text-only demos (the evaluation's 0-shot prompt). The
loss covers every image chunk's answer tokens and its ``<|endofchunk|>``, so in-context use is learned too.

Why it fits a 2-core CPU:

* the vision features of every image are computed once (the tower is frozen);
* cross-attention sits only before the top layers (``flamingo.cross_attn_layers``); the text below them
  cannot see images, so the hidden states entering the first block are computed once per text sequence
  (no grad) and cached. A chunk's text only fixes its (question, answer): every epoch each chunk gets an
  image drawn anew among the train images with that same (question, answer) pair, so the bridge sees
  fresh images at the cost of the top layers only;
* the token rows feed the lower layers, so they are trained in a short final phase (``row_steps``) that
  runs the whole LM (still frozen) with gradients to the rows and the bridge.

Deterministic for a given seed and thread count: every random draw comes from generators seeded by it.
"""


from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flamingo_eval.errors import UserError
from flamingo_eval.models.checkpoints import load_flamingo_checkpoint
from flamingo_eval.models.decoders.base import build_attn_inputs
from flamingo_eval.models.flamingo import Flamingo
from flamingo_eval.training.data import (
    Progress,
    Seq,
    build_sequences,
    encode_features,
    image_pools,
    lower_states,
    make_batches,
    pad,
    sample_image,
    split_by_image,
)
from flamingo_eval.training.recipe import TrainConfig
from flamingo_eval.training.validation import validate
from flamingo_eval.types import Sample

YES_NO = ("yes", "no")


def frozen_names(model: Flamingo, cfg: TrainConfig) -> set[str]:
    """Bridge parameters that stay at their start: the resampler's query/key/value projections
    (``freeze_resampler_attention``) and its feed-forward (unless ``train_resampler_ff``)."""
    out: set[str] = set()
    for i, layer in enumerate(model.perceiver.layers):
        ff = layer[1]  # type: ignore[index]
        pre = f"perceiver.layers.{i}."
        if cfg.freeze_resampler_attention:
            out |= {pre + "0.to_q.weight", pre + "0.to_kv.weight"}
        if not cfg.train_resampler_ff:
            out |= {pre + "1." + n for n, _ in ff.named_parameters()}
    return out


def fresh_bridge(model: Flamingo, cfg: TrainConfig) -> None:
    """The bridge's start: gates at ``init_gate``, the blocks' attention and feed-forward output projections at
    zero (so the model is exactly the text-only LM until they move), latents at ``latent_init_scale``."""
    with torch.no_grad():
        for blk in model.xattn.values():
            blk.attn_gate.fill_(cfg.init_gate)  # type: ignore[union-attr,operator]
            blk.ff_gate.fill_(cfg.init_gate)  # type: ignore[union-attr,operator]
            blk.attn.to_out.weight.zero_()  # type: ignore[union-attr,operator]
            blk.ff[-1].weight.zero_()  # type: ignore[index,union-attr,operator]
        model.perceiver.latents.mul_(cfg.latent_init_scale)
        if not cfg.train_resampler_ff:  # an attention-only resampler: its feed-forward adds exactly 0
            for layer in model.perceiver.layers:
                layer[1][-1].weight.zero_()  # type: ignore[index,union-attr,operator]


@dataclass
class History:
    """Loss curve and timings of a run (written to the training log)."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class BridgeTrainer:
    """Forward + loss of the bridge on a batch of sequences, from cached lower states or from the tokens."""

    def __init__(self, model: Flamingo, pad_id: int, lm_vocab: int, frozen: Collection[str] = ()) -> None:
        if model.lang.output_embeddings() is not None:
            raise UserError("bridge training learns the added token rows through a tied LM head; "
                            "this LM's head is untied")
        self.model = model
        self.first = min(int(i) for i in model.xattn)
        self.pad_id, self.lm_vocab = pad_id, lm_vocab
        model.requires_grad_(False)
        self.bridge = [p for n, p in model.named_parameters()
                       if n.startswith(("perceiver.", "xattn.")) and n not in frozen]
        for p in self.bridge:
            p.requires_grad_(True)
        emb = model.lang.input_embeddings().weight
        self.rows = torch.nn.Parameter(emb.detach()[lm_vocab:].clone())
        """The added tokens' rows, trained in the full-depth phase and written back into the table."""

    def latents(self, images: Sequence[Sequence[str]], feats: dict[str, Tensor]) -> Tensor:
        """(B, M, N, Dv) perceiver latents of each row's images (rows padded to M with zeros)."""
        flat = [p for row in images for p in row]
        m = max((len(row) for row in images), default=0)
        n, dv = self.model.perceiver.latents.shape
        out = torch.zeros(len(images), m, n, dv)
        if not flat:
            return out
        lat = self.model.perceiver(torch.stack([feats[p] for p in flat]))  # (I, N, Dv)
        i = 0
        for b, row in enumerate(images):
            out[b, : len(row)] = lat[i : i + len(row)]
            i += len(row)
        return out

    def loss(self, seqs: Sequence[Seq], images: Sequence[Sequence[str]], feats: dict[str, Tensor],
             lower: Sequence[Tensor] | None, bridge: bool = True) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy over target tokens, per-target correctness of the argmax).

        ``lower`` holds each sequence's cached states entering the first cross-attention layer; None runs the
        whole LM from the token embeddings (so gradients reach the token rows). ``bridge=False`` leaves the
        cross-attention blocks out (only valid while every gate is 0, so they add exactly nothing).
        """
        ids, valid = pad(seqs, self.pad_id)
        attn = build_attn_inputs(valid, ids.shape[1])
        img_idx = (ids == self.model.media_token_id).long().cumsum(-1)  # (B, T) 1-based image of each token
        lat = self.latents(images, feats) if bridge else torch.empty(0)
        if lower is None:
            start, x = 0, self.model.lang.embed(ids, attn.positions)
        else:
            start, x = self.first, torch.zeros(*ids.shape, lower[0].shape[-1])
            for b, h in enumerate(lower):
                x[b, : h.shape[0]] = h
        for i in range(start, len(self.model.lang.blocks)):
            if bridge and str(i) in self.model.xattn:
                blk = self.model.xattn[str(i)]
                k, v = blk.attn.project_media(lat)  # type: ignore[union-attr,operator]
                x = blk(x, k, v, img_idx)
            x = self.model.lang.blocks[i](x, attn, None, i)
        rows = torch.tensor([b for b, s in enumerate(seqs) for _ in s.targets])
        pos = torch.tensor([t for s in seqs for t in s.targets])
        logits = self.model.lang.head(x[rows, pos - 1]).float()  # position t-1 predicts token t
        target = ids[rows, pos]
        return F.cross_entropy(logits, target), logits.argmax(-1) == target

    def write_rows(self) -> None:
        with torch.no_grad():
            self.model.lang.input_embeddings().weight[self.lm_vocab:] = self.rows


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


@dataclass
class Prepared:
    """Everything the training loop reads: model, data and caches."""

    model: Flamingo
    trainer: BridgeTrainer
    train: list[Seq]
    val: list[Seq]
    pools: dict[tuple[str, str], list[str]]
    feats: dict[str, Tensor]
    lower: list[Tensor]
    """Hidden states entering the first cross-attention layer, per train sequence (after the rows are trained)."""
    val_lower: list[Tensor]
    info: dict[str, Any]


def prepare(cfg: TrainConfig, progress: Progress) -> Prepared:
    """Build the model (fresh bridge), the train/val sequences and the feature and lower-layer caches."""
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.models.build import build_model, special_ids
    from flamingo_eval.models.eval_model import FlamingoEvalModel
    from flamingo_eval.task import make_adapter

    for name in ("yes_no_keep", "balanced_share"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise UserError(f"{name}={getattr(cfg, name)} is a share: give a value from 0 to 1 "
                            f"(--{name.replace('_', '-')})")
    conf = compose_config("easyvqa", cfg.model)
    card = conf.benchmarks
    built = build_model(replace(conf.model, checkpoint=None, init="zero_gates", blind=False, seed=cfg.seed))
    if not isinstance(built, FlamingoEvalModel):
        raise UserError(f"model {cfg.model} (model.architecture={conf.model.architecture}) is not built on the "
                        "Flamingo engine; train fits the bridge of one")
    model, tok = built.model, built.tokenizer
    media_id, eoc_id = special_ids(tok)
    lm_vocab = min(media_id, eoc_id)
    if model.lang.vocab_size - lm_vocab != 2:
        raise UserError(f"expected <|endofchunk|> and <image> to be the last two token ids, got {eoc_id}, {media_id}")
    fresh_bridge(model, cfg)
    if cfg.init_from:
        if not Path(cfg.init_from).is_file():
            raise UserError(f"--init-from {cfg.init_from}: no such bridge file; give a .safetensors bridge "
                            "(e.g. flamingo_eval/weights/mini-bridge.safetensors)")
        load_flamingo_checkpoint(model, Path(cfg.init_from), lm_vocab=lm_vocab)
    samples = make_adapter(card, None).load(card.demo_split)  # the TRAIN split; test is never read
    train_s, val_s = split_by_image(samples, cfg.val_images, cfg.seed)
    if cfg.train_images is not None:
        keep = set(sorted({sample_image(s) for s in train_s})[: cfg.train_images])
        train_s = [s for s in train_s if sample_image(s) in keep]
    template = conf.prompts.templates[card.prompt]
    pick = random.Random(f"yes-no/{cfg.seed}")
    drawn = [s for s in train_s if s.references[0] not in YES_NO or pick.random() < cfg.yes_no_keep]
    rng = random.Random(f"sequences/{cfg.seed}")
    pools = image_pools(train_s)

    def build(part: list[Sample], n: int, balance: bool) -> list[Seq]:
        return build_sequences(part, n, tok, template, rng, max_chunks=cfg.max_chunks,
                               text_fraction=cfg.text_demo_fraction, text_demos=cfg.text_demos,
                               balance=image_pools(part) if balance else None)

    k = int(cfg.sequences * cfg.balanced_share)  # the balanced ones come after the natural ones
    train = build(drawn, cfg.sequences - k, cfg.balance_answers) + (build(drawn, k, True) if k else [])
    val = build(val_s, cfg.val_sequences, cfg.balance_answers)
    t0 = time.perf_counter()
    feats = encode_features(model, built.preprocess, [sample_image(s) for s in train_s + val_s],
                            cfg.feature_batch, progress, cfg.feature_cache)
    trainer = BridgeTrainer(model, int(tok.pad_token_id), lm_vocab, frozen_names(model, cfg))
    info = {"train_images": len({sample_image(s) for s in train_s}),
            "val_images": len({sample_image(s) for s in val_s}),
            "train_questions": len(train_s), "val_questions": len(val_s), "split": card.demo_split,
            "features_s": round(time.perf_counter() - t0, 1), "train_tokens": sum(len(s.ids) for s in train),
            "first_xattn_layer": trainer.first,
            "trained_parameters": sum(p.numel() for p in trainer.bridge) + trainer.rows.numel()}
    return Prepared(model, trainer, train, val, pools, feats, [], [], info)


def train(cfg: TrainConfig, progress: Progress, prepared: Prepared | None = None) -> tuple[Prepared, History]:
    """Phase 1 trains the token rows through the whole LM, phase 2 the bridge over cached lower states; returns
    the prepared state (its model now holds the trained rows and bridge) and the history."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    # Denormals: the zero-initialised projections and Adam's second moments of their first, tiny gradients are
    # subnormal floats, which x86 CPUs process ~10x slower (measured: 0.36 s vs 3-7 s per step). Flushing them
    # to zero changes nothing a step can resolve.
    flushed = torch.set_flush_denormal(True)
    try:
        return _train(cfg, progress, prepared)
    finally:
        torch.set_num_threads(threads)
        if flushed:
            torch.set_flush_denormal(False)


def _train(cfg: TrainConfig, progress: Progress, prepared: Prepared | None) -> tuple[Prepared, History]:
    t_start = time.perf_counter()
    p = prepared or prepare(cfg, progress)
    hist = History(seconds={"prepare": round(time.perf_counter() - t_start, 1)})
    torch.manual_seed(cfg.seed)  # nothing below draws from torch's RNG; pinned anyway
    t0 = time.perf_counter()
    batches = _batch_stream(p, cfg)
    if cfg.row_steps:  # phase 1: the token rows, through the whole LM (the bridge is still an identity)
        p.trainer.model.lang.input_embeddings().weight.requires_grad_(True)
        opt = torch.optim.AdamW([p.trainer.rows], lr=cfg.row_lr, weight_decay=0.0)
        _run_phase(p, cfg, hist, progress, opt, None, batches, cfg.row_steps, "token rows", full=True)
        p.trainer.model.lang.input_embeddings().weight.requires_grad_(False)
    hist.seconds["rows"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    p.lower = lower_states(p.model, p.train, p.trainer.first, p.trainer.pad_id, 32, progress)  # final rows
    p.val_lower = lower_states(p.model, p.val, p.trainer.first, p.trainer.pad_id, 32, progress)
    hist.seconds["lower_states"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    gates = [q for q in p.trainer.bridge if q.ndim == 0 or q.numel() == 1]  # phase 2: the bridge, cached
    rest = [q for q in p.trainer.bridge if not any(q is g for g in gates)]
    opt = torch.optim.AdamW([{"params": rest, "lr": cfg.lr}, {"params": gates, "lr": cfg.gate_lr}], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, cfg.steps, cfg.warmup))
    _run_phase(p, cfg, hist, progress, opt, sched, batches, cfg.steps, "bridge", full=False)
    hist.seconds["bridge"] = round(time.perf_counter() - t2, 1)
    hist.seconds["total"] = round(time.perf_counter() - t_start, 1)
    return p, hist


def _batch_stream(p: Prepared, cfg: TrainConfig) -> Iterator[tuple[list[Seq], list[list[str]], list[int]]]:
    """Endless (sequences, images, indices) batches: reshuffled each epoch, each chunk with a fresh image
    among the train images that have its (question, answer)."""
    for epoch in itertools.count():
        order = make_batches([len(s.ids) for s in p.train], cfg.batch_size,
                             random.Random(f"batches/{cfg.seed}/{epoch}"))
        img_rng = random.Random(f"images/{cfg.seed}/{epoch}")
        for idx in order:
            seqs = [p.train[i] for i in idx]
            yield seqs, [[img_rng.choice(p.pools[pair]) for pair in s.pairs] for s in seqs], idx


def _run_phase(p: Prepared, cfg: TrainConfig, hist: History, progress: Progress, opt: torch.optim.Optimizer,
               sched: Any, batches: Iterator[tuple[list[Seq], list[list[str]], list[int]]], steps: int,
               name: str, full: bool) -> None:
    """``steps`` optimiser steps; ``full`` runs the whole LM and trains the token rows, else the cached bridge."""
    tr, done = p.trainer, len(hist.steps)
    bridge = not full  # phase 1 runs before the bridge moves: its output projections are 0, it adds nothing
    progress.start(steps, name)
    for step in range(steps):
        seqs, images, idx = next(batches)
        loss, _ = tr.loss(seqs, images, p.feats, None if full else [p.lower[i] for i in idx], bridge)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if full:  # the rows' gradient is their slice of the (tied) table's
            weight = tr.model.lang.input_embeddings().weight
            assert weight.grad is not None
            tr.rows.grad, weight.grad = weight.grad[tr.lm_vocab:].clone(), None
        opt.step()
        if sched is not None:
            sched.step()
        if full:
            tr.write_rows()
        hist.steps.append(done + step + 1)
        hist.loss.append(float(loss.detach()))
        progress.update(step + 1, hist.loss[-1])
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            val = validate(tr, p.val, None if full else p.val_lower, p.feats, 32, bridge)
            hist.val.append({"step": done + step + 1, "phase": name, **val})
            progress.log(f"{name} step {step + 1}/{steps}: train loss {hist.loss[-1]:.4f}  val {_fmt(val)}")
    progress.finish()


def _fmt(v: dict[str, float]) -> str:
    return (f"loss {v['loss']:.4f}, answer acc {v['answer_acc']:.1f}% (yes/no {v['answer_acc_yes_no']:.1f}, "
            f"other {v['answer_acc_other']:.1f}; images shuffled {v['answer_acc_shuffled_images']:.1f})")
