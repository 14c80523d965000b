"""RICES demo selection (Yang et al. 2022; Flamingo/OpenFlamingo): the k most similar training images.

Videos take part through their middle frame (``video.media.thumbnail``).

Similarity is the cosine of open_clip image embeddings (ViT-L-14 ``openai`` by default, settings
``run.rices_model`` / ``run.rices_pretrained``). The demos of a query are its k nearest neighbours in
the WHOLE demo split (not the per-trial query set, as in OpenFlamingo), ordered so the most similar
sits last, right before the query; ties break by position in the split. The choice does not depend on
the trial seed.

Features are cached on disk (``run.rices_cache_dir``, default ``~/.cache/flamingo_eval/rices``): one
``.npy`` of L2-normalised rows plus a ``.json`` sidecar holding the sample ids of the rows, in order, and
the encoder fingerprint. A cache whose ids or fingerprint differ from what is asked is refused (unlike
OpenFlamingo's id-less feature files, which silently misalign when the dataset changes). Within a run
the features live in the sampler context, so shots and trials reuse them, and so does each query's
neighbour list (searched once, for the run's largest shot count). Images are encoded in batches
of exactly ``run.rices_batch_size`` (the last one padded), so an image's feature, to the last bit, does
not depend on the pool size, ``--limit`` or its neighbours; the batch size is part of the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flamingo_eval.errors import UserError
from flamingo_eval.faults import crash_point
from flamingo_eval.prompts.samplers import SamplerContext
from flamingo_eval.registry import SAMPLERS
from flamingo_eval.types import Sample

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """Where RICES features are cached by default (``~/.cache/flamingo_eval/rices``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flamingo_eval" / "rices"


def ids_digest(ids: Sequence[str]) -> str:
    """A short hash of the sample ids a feature cache was computed for (its key)."""
    return hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16]


class ClipImageFeatures:
    """open_clip image embeddings (unit norm) for samples' first media item; the model loads on first use.

    A video is represented by its middle frame (of its segment): one decode of one frame per clip, so RICES
    on a video benchmark costs about what it costs on images.
    """

    def __init__(self, model_name: str = "ViT-L-14", pretrained: str | None = "openai", device: str = "cpu",
                 batch_size: int = 32, seed: int = 0, image_size: int | None = None) -> None:
        self.model_name, self.pretrained, self.device = model_name, pretrained, device
        self.batch_size, self.seed, self.image_size = batch_size, seed, image_size
        self._model: Any = None
        self._preprocess: Any = None
        self.encoded = 0
        """Images encoded so far (tests use it to prove cache reuse)."""

    def fingerprint(self) -> str:
        """Identifies the encoder: architecture + weights tag (+ init seed for random weights)."""
        import open_clip

        spec = {"model": self.model_name, "pretrained": self.pretrained, "open_clip": open_clip.__version__,
                "image_size": self.image_size, "batch_size": self.batch_size}  # the chunk shape moves ulps
        if self.pretrained is None:
            spec["seed"] = self.seed
        return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _load(self) -> None:
        import open_clip
        import torch

        if self.model_name not in open_clip.list_models():
            raise UserError(f"run.rices_model: unknown open_clip model '{self.model_name}' (e.g. ViT-L-14)")
        tags = open_clip.list_pretrained_tags_by_model(self.model_name)
        if self.pretrained is not None and self.pretrained not in tags:
            raise UserError(f"run.rices_pretrained: open_clip has no weights '{self.pretrained}' for "
                            f"{self.model_name} (known: {', '.join(tags) or 'none'})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=self.pretrained, force_image_size=self.image_size)
            except Exception as err:  # noqa: BLE001 - a failed fetch surfaces as many exception types
                if self.pretrained is None:
                    raise
                raise UserError(f"open_clip weights {self.model_name}/{self.pretrained} for RICES are not in the "
                                f"local cache and cannot be downloaded ({type(err).__name__})") from None
        from flamingo_eval.models.runtime import resolve_device

        self._model, self._preprocess = model.to(resolve_device(self.device)).eval(), preprocess

    def __call__(self, samples: Sequence[Sample]) -> np.ndarray:
        """``(len(samples), D)`` float32 unit-norm image embeddings."""
        import torch

        from flamingo_eval.models.runtime import resolve_device
        from flamingo_eval.models.vision import encode_fixed_batches
        from flamingo_eval.video.media import thumbnail

        if self._model is None:
            self._load()
        for s in samples:
            if not s.media:
                raise UserError(f"rices: sample {s.id} has no image to compare")
        paths = list(dict.fromkeys(s.media[0] for s in samples))  # each image once (VQA: ~5 questions per image)
        rows = []
        for start in range(0, len(paths), self.batch_size):
            batch = paths[start : start + self.batch_size]
            pixels = torch.stack([self._preprocess(thumbnail(p)) for p in batch]).to(resolve_device(self.device))
            with torch.inference_mode():  # the last batch is padded: a feature never depends on the pool size
                feats = encode_fixed_batches(self._model.encode_image, pixels, self.batch_size).float()
            rows.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
            self.encoded += len(batch)
            crash_point("demo_pool")
        if not rows:
            return np.zeros((0, 0), np.float32)
        by_path = np.concatenate(rows).astype(np.float32)
        index = {p: i for i, p in enumerate(paths)}
        return by_path[[index[s.media[0]] for s in samples]]


def load_cached(path: Path, ids: Sequence[str], fingerprint: str) -> np.ndarray | None:
    """The cached features for exactly ``ids`` (in order) by encoder ``fingerprint``; None if absent.

    Raises:
        UserError: the file holds features of other ids, another encoder, or is inconsistent.
    """
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    hint = f"delete {path} and {meta_path.name} (or set run.rices_cache_dir) to rebuild it"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"RICES feature cache {meta_path} is unreadable ({e}); {hint}") from None
    if meta.get("fingerprint") != fingerprint:
        raise UserError(f"RICES feature cache {path} was built by another encoder "
                        f"({meta.get('fingerprint')} != {fingerprint}); {hint}")
    if list(meta.get("ids", [])) != list(ids):
        raise UserError(f"RICES feature cache {path} was built for other sample ids "
                        f"({len(meta.get('ids', []))} cached, {len(ids)} asked); refusing to misalign; {hint}")
    feats = np.load(path)
    if feats.ndim != 2 or feats.shape[0] != len(ids):
        raise UserError(f"RICES feature cache {path} has shape {feats.shape} for {len(ids)} ids; {hint}")
    return feats


def save_cached(path: Path, ids: Sequence[str], fingerprint: str, feats: np.ndarray) -> None:
    """Write features + sidecar atomically (features first; the sidecar makes the entry valid)."""
    from flamingo_eval.results.records import write_atomic, write_text_atomic

    write_atomic(path, lambda f: np.save(f, feats))  # unique temp names: torchrun ranks may write at once
    meta = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "ids": list(ids), "dim": int(feats.shape[1])}
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta))


def cached_features(encoder: Callable[[Sequence[Sample]], np.ndarray], fingerprint: str, samples: Sequence[Sample],
                    cache_dir: Path, name: str) -> np.ndarray:
    """Features of ``samples`` from ``cache_dir`` (file ``<name>-<n>-<ids digest>.npy``), else encode + save."""
    ids = [s.id for s in samples]
    path = cache_dir / f"{name}-{len(ids)}-{ids_digest(ids)}-{fingerprint.split(':')[-1]}.npy"
    feats = load_cached(path, ids, fingerprint)
    if feats is None:
        feats = encoder(samples)
        save_cached(path, ids, fingerprint, feats)
    return feats


def nearest(pool_feats: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Indices of the k rows most similar to ``query``, most similar LAST; ties by lower index first."""
    sims = pool_feats @ query
    k = min(k, len(sims))
    if k <= 0:
        return []
    if k < len(sims):  # every index tied with the k-th best competes, so ties resolve by index everywhere
        threshold = sims[np.argpartition(-sims, k - 1)[:k]].min()
        top = np.flatnonzero(sims >= threshold)
    else:
        top = np.arange(len(sims))
    best_first = sorted(top.tolist(), key=lambda i: (-float(sims[i]), i))[:k]
    return best_first[::-1]


def rices_encoder(options: Any) -> ClipImageFeatures:
    """The open_clip image encoder RICES compares with, from the run options."""
    pretrained = options.get("rices_pretrained", "openai")
    return ClipImageFeatures(model_name=str(options.get("rices_model", "ViT-L-14")),
                             pretrained=None if pretrained in (None, "", "none") else str(pretrained),
                             device=str(options.get("device", "cpu")),
                             batch_size=int(options.get("rices_batch_size", 32)),
                             image_size=options.get("rices_image_size"))


class RicesSampler:
    """Demos = nearest training images of the query by CLIP cosine similarity (see the module docstring)."""

    uses_whole_demo_split = True
    """Searches the whole demo split, not the per-trial query set (the runner sizes the demo pool by it)."""

    def __init__(self, pool: Sequence[Sample], benchmark: str, split: str, seed: int,
                 context: SamplerContext | None = None) -> None:
        if context is None or not context.demo_split:
            raise UserError("sampler rices needs the runner's sampler context (the demo split to search)")
        memo_key = f"rices:{benchmark}:{split}"
        if memo_key not in context.memo:
            context.memo[memo_key] = self._features(context, benchmark, split)
        self.pool, self.pool_feats, self.query_feats = context.memo[memo_key]
        self.neighbours: dict[str, np.ndarray] = context.memo.setdefault(f"rices-nn:{benchmark}:{split}", {})
        opts = context.options
        self.max_k = max([0, int(opts.get("zero_shot_text_demos") or 0), *map(int, opts.get("shots") or ())])

    @staticmethod
    def _features(context: SamplerContext, benchmark: str, split: str) -> tuple[Any, np.ndarray, dict[str, Any]]:
        opts = context.options
        encoder = context.memo.get("rices:encoder") or rices_encoder(opts)
        context.memo["rices:encoder"] = encoder
        cache_dir = Path(opts.get("rices_cache_dir") or default_cache_dir()).expanduser()
        fp = encoder.fingerprint()
        pool = list(context.demo_split)
        pool_feats = cached_features(encoder, fp, pool, cache_dir, f"{benchmark}-{split}")
        queries = list(context.queries)
        q_feats = cached_features(encoder, fp, queries, cache_dir, f"{benchmark}-queries")
        return pool, pool_feats, {s.id: q_feats[i] for i, s in enumerate(queries)}

    def demos(self, sample: Sample, k: int) -> list[Sample]:
        if k <= 0:
            return []
        q = self.query_feats.get(sample.id)
        if q is None:
            raise UserError(f"rices: no features for query {sample.id}; it is not among the run's eval samples")
        picked = [i for i in self._nearest(sample.id, q, k + 1) if self.pool[i].id != sample.id]
        return [self.pool[i] for i in picked[-k:]]

    def _nearest(self, sid: str, q: np.ndarray, n: int) -> list[int]:
        """``nearest(pool, q, n)``, searched once per query for the run's largest shot count.

        The choice does not depend on the trial seed, and the n nearest are the last n of the m >= n
        nearest (one total order: similarity, then index), so every (shots, trial) of a run slices one
        search instead of repeating a scan of the whole demo split (docs/performance.md).
        """
        hit = self.neighbours.get(sid)
        if hit is None or (len(hit) < n and len(hit) < len(self.pool_feats)):
            hit = np.asarray(nearest(self.pool_feats, q, max(n, self.max_k + 1)), dtype=np.int64)
            self.neighbours[sid] = hit
        return hit[-n:].tolist() if n > 0 else []


SAMPLERS.register("rices")(RicesSampler)
