"""The plain reference path: OpenFlamingo's evaluation loop over the same ``Flamingo`` module.

It is the oracle for the engine's equivalence tests and the baseline ``tools/bench.py`` measures the
engine against (``model.engine: reference``). It keeps OpenFlamingo's loop semantics (Awadalla et al. 2023,
``open_flamingo/eval/models/open_flamingo.py`` and ``src/flamingo.py``):

* requests are taken in the given order, ``batch_size`` at a time, left-padded to the longest prompt;
* no latent cache: every media slot of every row is decoded and encoded (zero images pad rows with fewer
  images; a video slot is its F frames), and for beam search the media and prompt rows are repeated per
  beam BEFORE encoding and prefill, as ``Flamingo.generate`` does before calling Hugging Face ``generate``
  (the vision forwards have the engine's constant ``vision_batch_size`` items, so both paths get
  bit-identical latents);
* every forward re-projects the media K/V of all images and applies the masked O(T·M·N) cross-attention;
* decoding uses a plain per-row KV cache that beam search reorders by copying (HF ``_reorder_cache``);
* rank: the context is prefilled once, then each candidate is scored token by token over the cached
  context, one candidate at a time for the whole batch (``get_rank_classifications`` with the cache).

It is a faithful baseline, not a strawman: it uses the KV cache during decoding (OpenFlamingo's default
MPT config re-runs the whole prompt at every step) and skips the forward of each candidate's last token,
whose logits OpenFlamingo computes and discards. docs/performance.md compares it with OpenFlamingo's code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flamingo_eval.models.cache import KVCache
from flamingo_eval.models.decoding import beam_search, greedy
from flamingo_eval.models.eval_model import FlamingoEvalModel, _gen_key
from flamingo_eval.models.flamingo import MediaState
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, RankRequest


class ReferenceEvalModel(FlamingoEvalModel):
    """OpenFlamingo-style loop; same constructor, tokenizer and decoding rules as ``FlamingoEvalModel``."""

    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        """Greedy or beam search, ``batch_size`` requests at a time in the given order."""
        out: list[str] = []
        for batch in self._in_order(requests, key=_gen_key):
            out += self._generate_ref(batch)  # type: ignore[arg-type]
        return out

    @torch.inference_mode()
    def rank(self, requests: list[RankRequest]) -> list[list[float]]:
        """Mean (or summed) log-prob of each candidate, scored token by token over the cached context."""
        out: list[list[float]] = []
        for batch in self._in_order(requests, key=lambda r: (r.candidates, r.normalize_length)):
            out += self._rank_ref(batch)  # type: ignore[arg-type]
        return out

    def _in_order(self, requests: list[Any], key: Any) -> list[list[Any]]:
        """Consecutive chunks of at most ``batch_size`` requests sharing ``key`` (no sorting)."""
        batches: list[list[Any]] = []
        for r in requests:
            if batches and len(batches[-1]) < self.batch_size and key(batches[-1][0]) == key(r):
                batches[-1].append(r)
            else:
                batches.append([r])
        return batches

    def _encode_all(self, prompts: list[InterleavedPrompt], repeat: int) -> Tensor:
        """Every media slot of every row (zero media for padding), rows repeated ``repeat`` times, encoded.

        A video slot is its F frames; when the slots' frame counts differ (fps sampling, images beside
        videos) there is no single (B, M, F, ...) tensor, so each slot is encoded on its own, once.
        """
        m = max((len(p.media) for p in prompts), default=0)
        n_lat, dim = self.model.latent_shape()
        if m == 0:
            return torch.zeros(len(prompts) * repeat, 0, n_lat, dim, device=self.device, dtype=self.dtype)
        pics = [[self._pixels(item) for item in p.media] for p in prompts]  # each (F, 3, H, W)
        if len({x.shape for row in pics for x in row}) > 1:
            return self._encode_slots(pics, m, repeat)
        shape = next(x for row in pics for x in row).shape
        pixels = torch.zeros(len(prompts), m, *shape)
        for b, row in enumerate(pics):
            for j, x in enumerate(row):
                pixels[b, j] = x
        pixels = pixels.repeat_interleave(repeat, 0).flatten(0, 1)  # (B*K*M, F, 3, H, W)
        lat = self._encode_pixels(pixels)  # (B*K*M, N, Dv), in vision_batch_size chunks like the engine
        self.latents.encodes += pixels.shape[0] * pixels.shape[1]
        return lat.view(len(prompts) * repeat, m, n_lat, dim)  # (B*K, M, N, Dv)

    def _encode_slots(self, pics: list[list[Tensor]], m: int, repeat: int) -> Tensor:
        """Slots of unequal frame counts: each encoded alone (padding slots stay zero latents)."""
        n_lat, dim = self.model.perceiver.latents.shape
        lat = torch.zeros(len(pics), m, n_lat, dim, device=self.device, dtype=self.dtype)
        for b, row in enumerate(pics):
            for j, x in enumerate(row):
                lat[b, j] = self._encode_pixels(x[None])[0]
                self.latents.encodes += x.shape[0]
        return lat.repeat_interleave(repeat, 0)  # (B*K, M, N, Dv)

    def _prefill_ref(self, prompts: list[InterleavedPrompt], repeat: int) -> tuple[Tensor, Tensor, KVCache, MediaState]:
        latents = self._encode_all(prompts, repeat)
        input_ids, valid = self._left_pad([self._encode(p.text) for p in prompts])
        input_ids, valid = input_ids.repeat_interleave(repeat, 0), valid.repeat_interleave(repeat, 0)
        rows = input_ids.shape[0]
        media = MediaState(kv={}, images_seen=torch.zeros(rows, dtype=torch.long, device=self.device),
                           latents=latents)
        cache = KVCache(len(self.model.lang.blocks))
        logits = self.model(input_ids, valid, cache, media, last_only=True)
        return logits[:, -1], valid, cache, media

    def _generate_ref(self, reqs: list[GenerateRequest]) -> list[str]:
        r0 = reqs[0]
        beams = max(1, r0.num_beams)
        stop_ids = self._stop_ids(r0.stop)
        last, valid, cache, media = self._prefill_ref([r.prompt for r in reqs], beams)
        state: dict[str, Any] = {"valid": valid, "expanded": beams == 1}

        def step(tokens: Tensor) -> Tensor:
            v = torch.cat([state["valid"], torch.ones_like(state["valid"][:, :1])], dim=1)
            state["valid"] = v
            return self.model(tokens[:, None], v, cache, media)[:, -1]

        def reorder(index: Tensor) -> None:
            if not state["expanded"]:  # rows were expanded to beams before the prefill
                state["expanded"] = True
                return
            cache.select(index)  # copies every layer's K/V, like HF's _reorder_cache
            state["valid"] = state["valid"].index_select(0, index)

        if beams == 1:
            seqs = greedy(last, step, r0.max_new_tokens, stop_ids, banned=self.model.banned_token_ids())
        else:
            seqs = beam_search(last[::beams], step, reorder, beams, r0.max_new_tokens, stop_ids, r0.length_penalty,
                               banned=self.model.banned_token_ids())
        return [self._decode(s, r.stop) for s, r in zip(seqs, reqs)]

    def _rank_ref(self, reqs: list[RankRequest]) -> list[list[float]]:
        last, valid, cache, media = self._prefill_ref([r.prompt for r in reqs], 1)
        logp0 = last.float().log_softmax(-1)  # (B, V)
        seen, no_image = media.images_seen.clone(), media.no_image
        out = torch.zeros(len(reqs), len(reqs[0].candidates))
        for c, toks in enumerate(self._candidate_ids(reqs[0].candidates)):
            if not toks:  # an empty candidate never wins (as in the engine)
                out[:, c] = float("-inf")
                continue
            total = logp0[:, toks[0]].clone()  # (B,)
            branch = KVCache(len(cache.k))  # the context cache is extended, never modified (HF tuples)
            branch.k, branch.v = list(cache.k), list(cache.v)
            v = valid
            media.images_seen, media.no_image = seen.clone(), no_image
            for j in range(len(toks) - 1):
                v = torch.cat([v, torch.ones_like(v[:, :1])], dim=1)
                tok = torch.full((len(reqs), 1), toks[j], dtype=torch.long, device=self.device)
                logits = self.model(tok, v, branch, media)[:, -1].float()  # (B, V)
                total += logits.log_softmax(-1)[:, toks[j + 1]]
            out[:, c] = total / len(toks) if reqs[0].normalize_length else total
        return out.tolist()
