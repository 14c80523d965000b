"""``FlamingoEvalModel``: the EvalModel the runner talks to (tokenising, batching, caches, decoding).

Padding is on the left with left-padding-aware positions, so a prompt's result does not depend on
its batch neighbours. Vision latents are computed once per distinct image (content hash) and kept in an
LRU cache with a byte budget; media K/V are projected once per prompt batch; the prompt is prefilled
once and the KV cache is expanded to beams or candidates afterwards.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flamingo_eval.media import content_hash, load_image
from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoding import beam_search, greedy
from flamingo_eval.models.flamingo import Flamingo, MediaState
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest


class LatentCache:
    """Memory LRU of per-image latents (N, Dv) keyed by content hash, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Tensor] = OrderedDict()
        self._bytes = 0
        self.encodes = 0
        self.hits = 0

    def get(self, key: str) -> Tensor | None:
        t = self._items.get(key)
        if t is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return t

    def put(self, key: str, value: Tensor) -> None:
        size = value.numel() * value.element_size()
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()


class FlamingoEvalModel:
    """Batched generation and candidate ranking over a ``Flamingo`` module."""

    def __init__(self, model: Flamingo, tokenizer: Any, preprocess: Callable[[Any], Tensor], *, model_id: str,
                 fingerprint: str, batch_size: int = 8, max_context: int = 2048, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, latent_cache_bytes: int = 1 << 30,
                 rank_chunk_bytes: int = 256 << 20) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.model_id = model_id
        self._fingerprint = fingerprint
        self.batch_size = batch_size
        self._max_context = max_context
        self.device = torch.device(device)
        self.dtype = dtype
        self.latents = LatentCache(latent_cache_bytes)
        self.rank_chunk_bytes = rank_chunk_bytes
        self.pad_id = int(tokenizer.pad_token_id)

    # ------------------------------------------------------------------ EvalModel protocol
    @property
    def max_context(self) -> int:
        return self._max_context

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        """Greedy (num_beams=1) or beam search; the stop string and what follows are removed."""
        out: list[str] = [""] * len(requests)
        for idx in self._batches([r.prompt for r in requests], key=lambda i: _gen_key(requests[i])):
            reqs = [requests[i] for i in idx]
            for i, text in zip(idx, self._generate_batch(reqs)):
                out[i] = text
        return out

    @torch.inference_mode()
    def rank(self, requests: list[RankRequest]) -> list[list[float]]:
        """Mean (or summed) log-prob of each candidate's tokens after the prompt."""
        out: list[list[float]] = [[] for _ in requests]
        for idx in self._batches([r.prompt for r in requests], key=lambda i: 0):
            reqs = [requests[i] for i in idx]
            for i, scores in zip(idx, self._rank_batch(reqs)):
                out[i] = scores
        return out

    # ------------------------------------------------------------------ batching and inputs
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _batches(self, prompts: Sequence[InterleavedPrompt], key: Callable[[int], Any]) -> list[list[int]]:
        """Group by ``key`` then sort by length (longest first) to limit padding; order is restored later."""
        lengths = [len(self._encode(p.text)) for p in prompts]
        groups: dict[Any, list[int]] = {}
        for i in range(len(prompts)):
            groups.setdefault(key(i), []).append(i)
        batches = []
        for members in groups.values():
            members.sort(key=lambda i: (-lengths[i], i))
            batches += [members[s : s + self.batch_size] for s in range(0, len(members), self.batch_size)]
        return batches

    def _image_latents(self, paths: Sequence[str]) -> list[Tensor]:
        keys = [content_hash(p) for p in paths]
        todo = {k: p for k, p in zip(keys, paths) if self.latents.get(k) is None}
        items = list(todo.items())
        for s in range(0, len(items), 32):
            chunk = items[s : s + 32]
            pixels = torch.stack([self.preprocess(load_image(p)) for _, p in chunk])
            lat = self.model.encode_images(pixels.to(self.device, self.dtype))  # (I, N, Dv)
            self.latents.encodes += len(chunk)
            for (k, _), t in zip(chunk, lat):
                self.latents.put(k, t)
        got = []
        for k in keys:
            t = self.latents.get(k)
            assert t is not None, "latent cache budget smaller than one batch of images"
            got.append(t)
        return got

    def _prefill(self, prompts: Sequence[InterleavedPrompt]) -> tuple[Tensor, Tensor, KVCache, MediaState]:
        """Left-pad, encode media, prefill. Returns last-position logits (B, V), key_valid, cache, media."""
        ids = [self._encode(p.text) for p in prompts]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        valid = torch.zeros((len(ids), width), dtype=torch.bool)
        for b, x in enumerate(ids):
            input_ids[b, width - len(x) :] = torch.tensor(x)
            valid[b, width - len(x) :] = True
        media = self._media_state(prompts)
        cache = KVCache(len(self.model.lang.blocks))
        logits = self.model(input_ids.to(self.device), valid.to(self.device), cache, media, last_only=True)
        return logits[:, -1], valid.to(self.device), cache, media

    def _media_state(self, prompts: Sequence[InterleavedPrompt]) -> MediaState:
        uniq = sorted({path for p in prompts for path in p.media})
        n_lat, dim = self.model.perceiver.latents.shape
        if not self.model.conditions_on_media():
            # Every gate is exactly zero: latents cannot change any output; only check the images load.
            for path in uniq:
                load_image(path)
            empty = torch.zeros(len(prompts), 0, n_lat, dim, device=self.device, dtype=self.dtype)
            return self.model.media_state(empty, len(prompts))
        m = max((len(p.media) for p in prompts), default=0)
        lat = torch.zeros(len(prompts), m, n_lat, dim, device=self.device, dtype=self.dtype)  # (B, M, N, Dv)
        by_path = dict(zip(uniq, self._image_latents(uniq))) if uniq else {}
        for b, p in enumerate(prompts):
            for j, path in enumerate(p.media):
                lat[b, j] = by_path[path]
        return self.model.media_state(lat, len(prompts))

    # ------------------------------------------------------------------ generation
    def _generate_batch(self, reqs: list[GenerateRequest]) -> list[str]:
        r0 = reqs[0]
        stop_ids = self._stop_ids(r0.stop)
        last, valid, cache, media = self._prefill([r.prompt for r in reqs])
        state = {"valid": valid}

        def step(tokens: Tensor) -> Tensor:
            v = torch.cat([state["valid"], torch.ones_like(state["valid"][:, :1])], dim=1)
            state["valid"] = v
            return self.model(tokens[:, None], v, cache, media)[:, -1]

        def reorder(index: Tensor) -> None:
            cache.select(index)
            media.select(index)
            state["valid"] = state["valid"].index_select(0, index)

        if r0.num_beams <= 1:
            seqs = greedy(last, step, r0.max_new_tokens, stop_ids)
        else:
            seqs = beam_search(last, step, reorder, r0.num_beams, r0.max_new_tokens, stop_ids, r0.length_penalty)
        return [self._decode(s, r.stop) for s, r in zip(seqs, reqs)]

    def _stop_ids(self, stop: Sequence[str]) -> set[int]:
        ids = set()
        for s in stop:
            enc = self.tokenizer(s, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(int(enc[0]))
        return ids

    def _decode(self, tokens: list[int], stop: Sequence[str]) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for s in stop:  # multi-token stop strings are cut here
            if s and s in text:
                text = text[: text.index(s)]
        return text

    # ------------------------------------------------------------------ ranking
    def _rank_batch(self, reqs: list[RankRequest]) -> list[list[float]]:
        last, valid, cache, media = self._prefill([r.prompt for r in reqs])
        logp0 = last.float().log_softmax(-1)  # (B, V)
        out = []
        for b, req in enumerate(reqs):
            cands = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in req.candidates]
            per_row = max(1, cache.nbytes() // max(len(reqs), 1))
            chunk = max(1, self.rank_chunk_bytes // per_row)
            scores: list[float] = []
            for s in range(0, len(cands), chunk):
                scores += self._score_candidates(cands[s : s + chunk], b, logp0[b], valid, cache, media,
                                                 req.normalize_length)
            out.append(scores)
        return out

    def _score_candidates(self, cands: list[list[int]], row: int, logp0: Tensor, valid: Tensor, cache: KVCache,
                          media: MediaState, normalize: bool) -> list[float]:
        """Score C candidates against prompt row ``row`` in one forward over a copy of its cache."""
        c, width = len(cands), max(len(x) for x in cands)
        toks = torch.full((c, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((c, width), dtype=torch.bool)
        for i, x in enumerate(cands):
            toks[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = True
        toks, mask = toks.to(self.device), mask.to(self.device)
        total = logp0[toks[:, 0]]  # (C,) log-prob of each first token
        if width > 1:
            index = torch.full((c,), row, dtype=torch.long, device=self.device)
            sub_cache, sub_media = cache.selected(index), media.selected(index)
            v = torch.cat([valid.index_select(0, index), mask[:, :-1]], dim=1)
            logits = self.model(toks[:, :-1], v, sub_cache, sub_media)  # (C, L-1, V)
            lp = logits.float().log_softmax(-1).gather(-1, toks[:, 1:, None])[..., 0]  # (C, L-1)
            total = total + (lp * mask[:, 1:]).sum(-1)
        lengths = mask.sum(-1).float()
        return (total / lengths if normalize else total).tolist()


def _gen_key(r: GenerateRequest) -> tuple[Any, ...]:
    return (r.max_new_tokens, r.num_beams, r.length_penalty, r.stop)
