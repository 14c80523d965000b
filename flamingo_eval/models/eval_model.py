"""``FlamingoEvalModel``: the EvalModel the runner talks to (tokenising, batching, caches, decoding).

Padding is on the left with left-padding-aware positions, so mathematically a prompt's result does not
depend on its batch neighbours; numerically, another padded shape may change logits in the last bits
(docs/protocol.md, "Batch size and float noise"). Vision latents are exact: images are encoded in chunks
of the constant ``vision_batch_size`` (the last one padded), so an image's latents are the same bits
whatever images it is encoded with. Where the speed comes from (docs/performance.md has the measurements):

* vision latents are computed once per distinct media item per run (``models/media_inputs.py``): a memory
  LRU with a byte budget keyed by (model fingerprint, vision batch size, media key), optionally backed by an
  on-disk cache. The media key
  of an image is its content hash; of a video, its content hash + segment + frame sampling + decoder
  (``video/media.py``), so a demo video is decoded and encoded once per run;
* media K/V are projected once per prompt batch; after the prompt only each row's last image is kept;
* prompts of a batch that share a token prefix (fixed demos) prefill it once and branch;
* the prompt is prefilled once; beams branch off the prompt cache (``BranchKVCache``), so neither the
  prompt's KV cache nor its media K/V are copied per beam;
* rank: one prefill per context, then the candidates' distinct token prefixes as one tree (each node sees
  the context and its ancestors) in a few forwards whose attention reads the shared context keys (no
  per-candidate copy of the context cache; a prefix shared by several candidates runs once).

``models/reference.py`` is the plain path (OpenFlamingo's loop) these are tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flamingo_eval.models.cache import BranchKVCache, KVCache
from flamingo_eval.models.decoders.base import AttnInputs
from flamingo_eval.models.decoding import beam_search, greedy
from flamingo_eval.models.flamingo import Flamingo, MediaState
from flamingo_eval.models.latent_cache import LatentCache
from flamingo_eval.models.media_inputs import MediaInputs
from flamingo_eval.models.rank_tree import tree_chunks
from flamingo_eval.timing import PhaseTimer, cuda_sync
from flamingo_eval.types import GenerateRequest, InterleavedPrompt, Media, RankRequest
from flamingo_eval.video.media import MediaLoader

MIN_SHARED_PREFIX = 16
"""Shortest common token prefix (of a batch) worth a separate prefill."""
MAX_TREE_NODES = 256
"""Most candidate-prefix nodes in one rank forward (their attention among themselves is N x N)."""
VISION_BATCH_SIZE = 8
"""Default media items per vision forward (``model.vision_batch_size``): every forward has this many rows
(an image is an item of one frame, a video an item of F frames)."""
LATENT_CACHE_BYTES = 1 << 30
"""Default byte budget of the in-memory latent LRU (1 GiB, ``model.latent_cache_mb: 1024``): ~4k images of
64 x 1024 fp32 latents, more than a 32-shot run's demo pool."""
RANK_CHUNK_BYTES = 256 << 20
"""Default memory budget of one candidate-scoring forward: caps the activations of many candidates at once
(1000 ImageNet classes would otherwise run as one huge batch)."""
CANDIDATE_LISTS_KEPT = 16
"""Tokenised candidate lists memoised: a benchmark has one shared list (class names) or one per sample
(VisDial's options, used once), so a small memo is enough and bounds memory."""
FLOAT_BYTES = 4
"""The rank budget counts fp32 values: logits and scores are fp32 even on bf16 weights."""
SCORES_PER_CONTEXT_KEY = 16
"""Attention-score values per context key per scored token (an estimate: heads' score rows alive at once)."""
ACTIVATIONS_PER_TOKEN = 8
"""Hidden-width activations alive per scored token (an estimate: q, k, v, attention output, MLP parts)."""
LOGITS_PER_TOKEN = 2
"""Vocabulary-width values per scored token: the logits and their log-softmax."""


class FlamingoEvalModel(MediaInputs):
    """Batched generation and candidate ranking over a ``Flamingo`` module (media side: ``MediaInputs``)."""

    def __init__(self, model: Flamingo, tokenizer: Any, preprocess: Callable[[Any], Tensor], *, model_id: str,
                 fingerprint: str, batch_size: int = 8, max_context: int = 2048, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, latent_cache_bytes: int = LATENT_CACHE_BYTES,
                 rank_chunk_bytes: int = RANK_CHUNK_BYTES, latent_cache_dir: str | None = None,
                 rank_tree: bool = True, vision_batch_size: int = VISION_BATCH_SIZE) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.model_id = model_id
        self._fingerprint = fingerprint
        self.batch_size = batch_size
        self._max_context = max_context
        split = model.stages  # a model split over devices: inputs go to its embeddings' device
        self.device = model.input_device if split is not None else torch.device(device)
        self.latent_device = model.latent_device if split is not None else self.device
        self.dtype = dtype
        self.latents = LatentCache(latent_cache_bytes, latent_cache_dir, self.latent_device)
        self.timer = PhaseTimer(cuda_sync(list(split.devices) if split is not None else [self.device]))
        """Seconds per phase (vision, prefill, decode, candidates) for the record's throughput block."""
        self.rank_chunk_bytes = rank_chunk_bytes
        self.rank_tree = rank_tree
        self.vision_batch_size = vision_batch_size
        self.pad_id = int(tokenizer.pad_token_id)
        self._cand_ids: dict[tuple[str, ...], list[list[int]]] = {}
        self.media = MediaLoader()
        """Loads images and decodes videos; counts decoding (``media_stats``)."""
        self._checked: set[Media] = set()  # media already loaded once by the zero-gate path

    # ------------------------------------------------------------------ EvalModel protocol
    @property
    def max_context(self) -> int:
        return self._max_context

    @property
    def precision(self) -> str:
        """The weights' dtype as configs name it (``bf16``, ``fp32``, ...): what ``precision: auto`` became."""
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))

    @property
    def placement(self) -> str | None:
        """Where a split model's parts run (``model.device_map``), e.g. ``cuda:0: vision, ...; cuda:1: ...``."""
        return None if self.model.stages is None else self.model.stages.describe()

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

    def _candidate_ids(self, cands: tuple[str, ...]) -> list[list[int]]:
        """Candidates tokenised once per distinct candidate list (1000 class names are shared by all queries)."""
        got = self._cand_ids.get(cands)
        if got is None:
            got = [list(x) for x in self.tokenizer(list(cands), add_special_tokens=False)["input_ids"]]
            if len(self._cand_ids) > CANDIDATE_LISTS_KEPT:
                self._cand_ids.clear()
            self._cand_ids[cands] = got
        return got

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

    def _left_pad(self, ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        valid = torch.zeros((len(ids), width), dtype=torch.bool)
        for b, x in enumerate(ids):
            if len(x):
                input_ids[b, width - len(x) :] = torch.tensor(x)
                valid[b, width - len(x) :] = True
        return input_ids.to(self.device), valid.to(self.device)

    def _prefill(self, prompts: Sequence[InterleavedPrompt]) -> tuple[Tensor, Tensor, KVCache, MediaState]:
        """Left-pad, encode media, prefill. Returns last-position logits (B, V), key_valid, cache, media.

        A token prefix common to the whole batch (same tokens, same images) is prefilled once on one row;
        the rows then branch off it (the returned cache is a ``BranchKVCache``).
        """
        ids = [self._encode(p.text) for p in prompts]
        media = self._media_state(prompts)
        with self.timer.phase("prefill"):
            return self._prefill_lm(ids, prompts, media)

    def _prefill_lm(self, ids: list[list[int]], prompts: Sequence[InterleavedPrompt],
                    media: MediaState) -> tuple[Tensor, Tensor, KVCache, MediaState]:
        n_layers = len(self.model.lang.blocks)
        shared = self._shared_prefix(ids, prompts)
        if shared == 0:
            input_ids, valid = self._left_pad(ids)
            cache = KVCache(n_layers)
            logits = self.model(input_ids, valid, cache, media, last_only=True)
            return logits[:, -1], valid, cache, media
        n_img = sum(1 for t in ids[0][:shared] if t == self.model.media_token_id)
        head = MediaState(kv={i: (k[:1, :n_img], v[:1, :n_img]) for i, (k, v) in media.kv.items()},
                          images_seen=media.images_seen[:1])
        prefix = KVCache(n_layers)
        self.model(torch.tensor([ids[0][:shared]], device=self.device),
                   torch.ones(1, shared, dtype=torch.bool, device=self.device), prefix, head, last_only=True)
        cache = BranchKVCache([prefix], rows=len(ids))
        media.images_seen = torch.full_like(media.images_seen, n_img)
        media.no_image = None if head.no_image is None else head.no_image.expand(len(ids))
        input_ids, valid = self._left_pad([x[shared:] for x in ids])
        valid = torch.cat([torch.ones(len(ids), shared, dtype=torch.bool, device=self.device), valid], dim=1)
        logits = self.model(input_ids, valid, cache, media, last_only=True)
        return logits[:, -1], valid, cache, media

    def _shared_prefix(self, ids: Sequence[Sequence[int]], prompts: Sequence[InterleavedPrompt]) -> int:
        """Length of the token prefix shared by every row (same images too), 0 when not worth branching."""
        if len(ids) < 2:
            return 0
        limit = min(len(x) for x in ids) - 1  # every row keeps at least one token of its own
        n = 0
        while n < limit and all(x[n] == ids[0][n] for x in ids):
            n += 1
        img = 0
        for pos in range(n):
            if ids[0][pos] == self.model.media_token_id:
                if any(len(p.media) <= img or p.media[img] != prompts[0].media[img] for p in prompts):
                    n = pos  # rows show different images here: the shared part ends before this one
                    break
                img += 1
        return n if n >= MIN_SHARED_PREFIX else 0

    # ------------------------------------------------------------------ generation
    def _generate_batch(self, reqs: list[GenerateRequest]) -> list[str]:
        r0 = reqs[0]
        stop_ids = self._stop_ids(r0.stop)
        last, valid, cache, media = self._prefill([r.prompt for r in reqs])
        levels = _levels(cache)
        last_media = media.last_image()  # tokens after the prompt see only each row's last image
        state: dict[str, Any] = {}

        def branch(group: int) -> None:  # rows of one prompt branch off its cache: nothing is copied
            state["cache"] = BranchKVCache(levels, rows=len(reqs) * group)
            state["media"] = last_media.branched(group)
            state["valid"] = valid.repeat_interleave(group, 0)

        def step(tokens: Tensor) -> Tensor:
            v = torch.cat([state["valid"], torch.ones_like(state["valid"][:, :1])], dim=1)
            state["valid"] = v
            return self.model(tokens[:, None], v, state["cache"], state["media"])[:, -1]

        def reorder(index: Tensor) -> None:
            if not state:  # beam_search's first call expands the prompts to beams
                branch(index.shape[0] // len(reqs))
                return
            state["cache"].select(index)  # within-group reorder: only the generated tokens' K/V move
            state["valid"] = state["valid"].index_select(0, index)

        with self.timer.phase("decode"):
            banned = self.model.banned_token_ids()
            if r0.num_beams <= 1:
                branch(1)
                seqs = greedy(last, step, r0.max_new_tokens, stop_ids, banned=banned)
            else:
                seqs = beam_search(last, step, reorder, r0.num_beams, r0.max_new_tokens, stop_ids,
                                   r0.length_penalty, banned=banned)
        return [self._decode(s, r.stop) for s, r in zip(seqs, reqs)]

    def _stop_ids(self, stop: Sequence[str]) -> set[int]:
        ids = set(self.model.stop_token_ids())
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
        with self.timer.phase("candidates"):
            return self._rank_rows(reqs, last, valid, cache, media)

    def _rank_rows(self, reqs: list[RankRequest], last: Tensor, valid: Tensor, cache: KVCache,
                   media: MediaState) -> list[list[float]]:
        logp0 = last.float().log_softmax(-1)  # (B, V)
        levels = _levels(cache)
        last_media = media.last_image()
        out = []
        for b, req in enumerate(reqs):
            pad = int((~valid[b]).sum())
            # Row b's context as views: shared levels (no padding) and its own part without left padding.
            ctx = [lvl.view(b // (len(reqs) // lvl.k[0].shape[0]), pad if j == len(levels) - 1 else 0)  # type: ignore[union-attr]
                   for j, lvl in enumerate(levels)]
            row_media = MediaState(kv={i: (k[b : b + 1], v[b : b + 1]) for i, (k, v) in last_media.kv.items()},
                                   images_seen=last_media.images_seen[b : b + 1])
            out.append(self._score_row(self._candidate_ids(req.candidates), logp0[b], ctx, row_media,
                                       req.normalize_length))
        return out

    def _score_row(self, cands: list[list[int]], logp0: Tensor, ctx: list[KVCache], media: MediaState,
                   normalize: bool) -> list[float]:
        """Score every candidate of one context, in forwards sized by ``rank_chunk_bytes``.

        Default: the candidates' distinct prefixes as a token tree (``rank_tree``). Candidates holding a token
        that changes which image later text sees (``<image>``; IDEFICS's end of document) are scored as padded rows.
        """
        ctx_len = sum(c.length for c in ctx)
        cfg = self.model.lang
        per_token = FLOAT_BYTES * (ctx_len * SCORES_PER_CONTEXT_KEY + ACTIVATIONS_PER_TOKEN * cfg.hidden_size
                                   + LOGITS_PER_TOKEN * cfg.vocab_size)
        budget = max(1, self.rank_chunk_bytes // per_token)
        switch = set(self.model.image_switch_ids())
        if self.rank_tree and not any(t in switch for x in cands for t in x):
            return self._score_tree(cands, logp0, ctx, media, normalize, min(budget, MAX_TREE_NODES))
        order = sorted(range(len(cands)), key=lambda i: (-len(cands[i]), i))
        scores = [0.0] * len(cands)
        s = 0
        while s < len(order):
            width = max(1, len(cands[order[s]]) - 1)
            chunk = order[s : s + max(1, budget // width)]
            for i, val in zip(chunk, self._score_chunk([cands[i] for i in chunk], logp0, ctx, media, normalize)):
                scores[i] = val if cands[i] else float("-inf")  # an empty candidate never wins
            s += len(chunk)
        return scores

    def _score_tree(self, cands: list[list[int]], logp0: Tensor, ctx: list[KVCache], media: MediaState,
                    normalize: bool, max_nodes: int) -> list[float]:
        """All candidates of one context via their prefix tree, one forward per chunk of nodes."""
        ctx_len = sum(c.length for c in ctx)
        first = torch.tensor([x[0] if x else 0 for x in cands], device=self.device)
        total = logp0[first].clone()  # (C,)
        for ch in tree_chunks(cands, max_nodes):
            n = len(ch.tokens)
            pos = ctx_len - 1 + torch.tensor(ch.depth, device=self.device)[None]  # (1, N)
            key_pos = torch.cat([torch.arange(ctx_len, device=self.device)[None], pos], dim=1)  # (1, S + N)
            mask = torch.cat([torch.ones(n, ctx_len, dtype=torch.bool), ch.ancestor_mask()], dim=1)
            attn = AttnInputs(positions=pos, key_positions=key_pos, mask=mask[None, None].to(self.device))
            toks = torch.tensor([ch.tokens], device=self.device)
            logits = self.model(toks, None, BranchKVCache(ctx, rows=1), media, attn=attn)[0].float()  # (N, V)
            nodes = torch.tensor(ch.nodes, device=self.device)
            lp = logits[nodes, torch.tensor(ch.targets, device=self.device)] - logits.logsumexp(-1)[nodes]
            rows = torch.tensor(ch.candidates, device=self.device)[torch.tensor(ch.rows, device=self.device)]
            total.index_add_(0, rows, lp)
        if normalize:
            total = total / torch.tensor([max(1, len(x)) for x in cands], dtype=total.dtype, device=self.device)
        return [v if x else float("-inf") for v, x in zip(total.tolist(), cands)]  # an empty candidate never wins

    def _score_chunk(self, cands: list[list[int]], logp0: Tensor, ctx: list[KVCache], media: MediaState,
                     normalize: bool) -> list[float]:
        """C candidates (right-padded) in one forward whose attention reads the shared context keys."""
        c, width = len(cands), max(len(x) for x in cands)
        toks = torch.full((c, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((c, width), dtype=torch.bool)
        for i, x in enumerate(cands):
            toks[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = True
        toks, mask = toks.to(self.device), mask.to(self.device)
        total = logp0[toks[:, 0]]  # (C,) log-prob of each first token
        if width > 1:
            ctx_len = sum(lvl.length for lvl in ctx)
            cache = BranchKVCache(ctx, rows=c)
            cand_media = MediaState(kv=media.kv, images_seen=media.images_seen.expand(c))
            v = torch.cat([torch.ones(c, ctx_len, dtype=torch.bool, device=self.device), mask[:, :-1]], dim=1)
            logits = self.model(toks[:, :-1], v, cache, cand_media).float()  # (C, L-1, V)
            lp = logits.gather(-1, toks[:, 1:, None])[..., 0] - logits.logsumexp(-1)  # (C, L-1)
            total = total + (lp * mask[:, 1:]).sum(-1)
        lengths = mask.sum(-1).float()
        return (total / lengths if normalize else total).tolist()


def _levels(cache: KVCache) -> list[KVCache]:
    """The read-only levels a branch of ``cache`` extends (a branch cache's shared levels + its own part)."""
    if isinstance(cache, BranchKVCache):
        own = KVCache(len(cache.k))
        own.k, own.v = list(cache.k), list(cache.v)
        return [*cache.shared, own]
    return [cache]


def _gen_key(r: GenerateRequest) -> tuple[Any, ...]:
    return (r.max_new_tokens, r.num_beams, r.length_penalty, r.stop)
