"""Data and caches for bridge training (``flamingo_eval.training.bridge``): easy-VQA train sequences in the
evaluation's demo format, the images each (question, answer) allows, frozen vision features and the cached
hidden states below the first cross-attention layer."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from flamingo_eval.errors import UserError
from flamingo_eval.media import load_image
from flamingo_eval.models.decoders.base import build_attn_inputs
from flamingo_eval.models.flamingo import Flamingo
from flamingo_eval.prompts.builder import fill
from flamingo_eval.types import IMAGE_TOKEN, Sample


class Progress(Protocol):
    """What training reports to (``display.TrainProgress`` in the tool: only display.py prints)."""

    def start(self, total: int, description: str) -> None: ...
    def update(self, done: int, loss: float) -> None: ...
    def log(self, message: str) -> None: ...
    def finish(self) -> None: ...


class Silent:
    """A ``Progress`` that reports nothing (tests)."""

    def start(self, total: int, description: str) -> None:
        pass

    def update(self, done: int, loss: float) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Seq:
    """One training sequence: token ids, which positions are predicted, and the (q, a) of each image chunk."""

    ids: list[int]
    targets: list[int]
    """Positions whose token the loss predicts (answer tokens and ``<|endofchunk|>`` of image chunks)."""
    pairs: list[tuple[str, str]]
    """(question, answer) of each image chunk, in order."""
    images: list[str]
    """The chunks' own images (validation keeps them; training redraws them each epoch)."""


def split_by_image(samples: Sequence[Sample], val_images: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val): every question of a held-out image goes to val, so val images are never trained on."""
    images = sorted({sample_image(s) for s in samples})
    if val_images >= len(images):
        raise UserError(f"val_images={val_images} must be below the {len(images)} train images")
    random.Random(f"val-split/{seed}").shuffle(images)
    held = set(images[:val_images])
    return [s for s in samples if sample_image(s) not in held], [s for s in samples if sample_image(s) in held]


def encode_chunks(tok: Any, template: Any, sample: Sample, with_image: bool) -> tuple[list[int], list[int]]:
    """Token ids of one demo chunk (+ separator) and the offsets of its answer + ``<|endofchunk|>`` tokens."""
    query = fill(template.query, sample, with_answer=False)
    demo = fill(template.demo, sample, with_answer=True)
    if not with_image:
        query, demo = query.replace(IMAGE_TOKEN, ""), demo.replace(IMAGE_TOKEN, "")
    q_ids = tok(query, add_special_tokens=False)["input_ids"]
    d_ids = tok(demo, add_special_tokens=False)["input_ids"]
    if d_ids[: len(q_ids)] != q_ids:  # the evaluation generates after the query's tokens: they must agree
        raise UserError(f"template: the demo of {sample.id} does not start with its query's tokens")
    sep = tok(template.separator, add_special_tokens=False)["input_ids"] if template.separator else []
    return list(d_ids) + list(sep), list(range(len(q_ids), len(d_ids))) if with_image else []


def build_sequences(samples: Sequence[Sample], n: int, tok: Any, template: Any, rng: random.Random, *,
                    max_chunks: int, text_fraction: float, text_demos: int,
                    balance: dict[tuple[str, str], list[str]] | None = None) -> list[Seq]:
    """``n`` sequences of 1..``max_chunks`` image chunks; a ``text_fraction`` share of them opens with
    ``text_demos`` text-only demos (the evaluation's 0-shot prompt).

    ``balance`` (the split's ``image_pools``): each image chunk keeps its question but takes an answer drawn
    uniformly among the answers the split gives that question, and an image with that answer. easy-VQA's
    questions are not balanced ("is there not a black shape?" is mostly "yes": the question text alone gets
    84% of its yes/no answers right); balanced, the text predicts nothing and only the image can lower the loss.
    """
    answers: dict[str, list[str]] = {}
    for q, a in sorted(balance or {}):
        answers.setdefault(q, []).append(a)
    out = []
    for _ in range(n):
        picked = rng.choices(samples, k=rng.randint(1, max_chunks))
        if balance is not None:
            picked = [_rebalanced(s, answers, balance, rng) for s in picked]
        chunks = [(s, True) for s in picked]
        if rng.random() < text_fraction:
            chunks = [(s, False) for s in rng.choices(samples, k=text_demos)] + chunks
        ids: list[int] = []
        targets: list[int] = []
        for s, with_image in chunks:
            c_ids, offsets = encode_chunks(tok, template, s, with_image)
            targets += [len(ids) + o for o in offsets]
            ids += c_ids
        images = [s for s, w in chunks if w]
        out.append(Seq(ids, targets, [(s.fields["question"], s.references[0]) for s in images],
                       [sample_image(s) for s in images]))
    return out


def _rebalanced(s: Sample, answers: dict[str, list[str]], pools: dict[tuple[str, str], list[str]],
                rng: random.Random) -> Sample:
    """``s``'s question with a uniformly drawn answer among the question's answers, and an image that has it."""
    q = s.fields["question"]
    a = rng.choice(answers[q])
    return replace(s, references=(a,), media=(rng.choice(pools[(q, a)]),))


def sample_image(s: Sample) -> str:
    """The path of ``s``'s one still image (bridge training reads easy-VQA: a video is an error)."""
    media = s.media[0]
    if not isinstance(media, str):
        raise UserError(f"bridge training reads still images; sample {s.id} has a video")
    return media


def image_pools(samples: Sequence[Sample]) -> dict[tuple[str, str], list[str]]:
    """(question, answer) -> the images for which the dataset says that question has that answer."""
    pools: dict[tuple[str, str], list[str]] = {}
    for s in samples:
        pools.setdefault((s.fields["question"], s.references[0]), []).append(sample_image(s))
    return {k: sorted(set(v)) for k, v in pools.items()}


# ---------------------------------------------------------------------------------------------- caches
@torch.no_grad()
def encode_features(model: Flamingo, preprocess: Callable[[Any], Tensor], paths: Sequence[str],
                    batch: int, progress: Progress, cache_dir: str | None = None) -> dict[str, Tensor]:
    """Frozen vision-tower tokens (V, Dv) of every image, computed once (optionally kept in ``cache_dir``,
    keyed by the tower's fingerprint and the image list)."""
    paths = sorted(set(paths))
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256((model.vision_encoder.fingerprint() + "\n".join(paths)).encode()).hexdigest()[:24]  # type: ignore[operator]
        cache = Path(cache_dir).expanduser() / f"features-{key}.pt"
        if cache.is_file():
            stacked = torch.load(cache, weights_only=True)
            return dict(zip(paths, stacked))
    out: dict[str, Tensor] = {}
    progress.start(len(paths), "vision features")
    for s in range(0, len(paths), batch):
        chunk = paths[s : s + batch]
        feats = model.vision_encoder(torch.stack([preprocess(load_image(p)) for p in chunk]))
        out.update(zip(chunk, feats))
        progress.update(s + len(chunk), float("nan"))
    progress.finish()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.stack([out[p] for p in paths]), cache)
    return out


def make_batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (less padding): sort within windows of 16 batches, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = size * 16
    batches = []
    for w in range(0, len(order), window):
        part = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches += [part[b : b + size] for b in range(0, len(part), size)]
    rng.shuffle(batches)
    return batches


def pad(seqs: Sequence[Seq], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids (B, T) and validity mask; causal attention keeps real tokens blind to the padding."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    valid = torch.zeros(len(seqs), width, dtype=torch.bool)
    for b, s in enumerate(seqs):
        ids[b, : len(s.ids)] = torch.tensor(s.ids)
        valid[b, : len(s.ids)] = True
    return ids, valid


@torch.no_grad()
def lower_states(model: Flamingo, seqs: Sequence[Seq], first: int, pad_id: int, batch: int,
                 progress: Progress) -> list[Tensor]:
    """Hidden states entering decoder layer ``first`` (T, D) per sequence; no image reaches them."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].ids))
    out: list[Tensor] = [torch.empty(0)] * len(seqs)
    progress.start(len(seqs), f"LM layers 0..{first - 1} (cached)")
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        ids, valid = pad([seqs[i] for i in idx], pad_id)
        attn = build_attn_inputs(valid, ids.shape[1])
        x = model.lang.embed(ids, attn.positions)
        for i in range(first):
            x = model.lang.blocks[i](x, attn, None, i)
        for b, i in enumerate(idx):
            out[i] = x[b, : len(seqs[i].ids)].clone()
        progress.update(s + len(idx), float("nan"))
    progress.finish()
    return out
