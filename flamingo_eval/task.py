"""What a run evaluates, resolved once before any model loads: eval samples, demo pool, metric, template.

Everything here is checked at start-up so that a run which cannot give a correct result stops with one
line before the model is loaded: missing files, an empty eval split, a demo pool too small for the
requested shots, an unannotated split without a submission format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import flamingo_eval.benchmarks  # noqa: F401  (registers adapters)
import flamingo_eval.metrics  # noqa: F401  (registers metrics)
import flamingo_eval.prompts  # noqa: F401  (registers samplers, extractors)
from flamingo_eval.benchmarks import submission
from flamingo_eval.benchmarks.base import Adapter
from flamingo_eval.card_args import build_metric
from flamingo_eval.config import BenchmarkCard, Config, to_dict
from flamingo_eval.errors import UserError
from flamingo_eval.prompts.samplers import SamplerContext, keyed_rng
from flamingo_eval.registry import ADAPTERS, EXTRACTORS, SAMPLERS
from flamingo_eval.request_kinds import RequestKind, request_kind
from flamingo_eval.types import Sample
from flamingo_eval.video.files import accepted, video_problems

__all__ = ["Task", "data_missing", "demo_pool_size", "eval_subset", "make_adapter", "prepare", "run_seeds"]


def make_adapter(card: BenchmarkCard, data_root: str | None) -> Adapter:
    """The card's adapter over its data directory under ``data_root``."""
    root = Path(data_root or ".").expanduser() / card.data_dir
    return ADAPTERS.get(card.adapter)(card, root)


def data_missing(card: BenchmarkCard, data_root: str | None) -> list[tuple[str, Path]]:
    """(name, path) of every file the card's demo and eval splits need that is missing."""
    adapter = make_adapter(card, data_root)
    splits = dict.fromkeys([card.demo_split, card.eval_split])
    return [m for s in splits for m in adapter.missing(s)]


@dataclass
class Task:
    """Everything resolved once per run (no per-benchmark branches below this point)."""

    cfg: Config
    eval_samples: list[Sample]
    demo_samples: list[Sample]
    candidates: tuple[str, ...] | None
    metric: Any
    extractor: Callable[[str], str]
    template: Any
    sampler_context: SamplerContext = field(default_factory=SamplerContext)
    submission_key: str | None = None
    """Set when the eval split has no annotations: each trial writes a submission file instead of a score."""
    submission_ids: tuple[Any, ...] = ()
    """Every id the submission must answer (the whole eval split, before --limit)."""
    metric_fields: tuple[str, ...] = ()
    """Sample fields the metric reads (``Adapter.metric_fields``) and the card's ``gate.groups`` field, carried in
    the prediction line's ``extra``."""
    trial_samples: dict[int, list[Sample]] = field(default_factory=dict)
    """``run.subset=random_per_trial``: each trial seed's own eval subset (else empty: ``eval_samples``)."""

    @property
    def kind(self) -> RequestKind:
        """The request kind the card's ``mode`` names: builds requests, calls the model, extracts answers."""
        return request_kind(self.cfg.benchmarks.mode)

    def for_trial(self, seed: int) -> Task:
        """This task restricted to the eval samples of the trial with ``seed``."""
        own = self.trial_samples.get(seed)
        return self if own is None else replace(self, eval_samples=own)


def run_seeds(run: Any) -> list[int]:
    """The trial seeds: ``run.seeds`` if given, else ``seed .. seed + trials - 1``."""
    return list(run.seeds) if run.seeds else [run.seed + i for i in range(run.trials)]


def eval_subset(samples: list[Sample], limit: int | None, subset: str, seed: int) -> list[Sample]:
    """``limit`` samples of the eval split: the first N, or a seeded random N kept in split order."""
    if limit is None or limit >= len(samples):
        return samples
    if subset == "first":
        return samples[:limit]
    keep = sorted(keyed_rng(seed, "eval_subset").sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def prepare(cfg: Config) -> Task:
    """Read the data and resolve the run; raises :class:`UserError` for anything that cannot run."""
    card = cfg.benchmarks
    metric = build_metric(card)  # its value checks (e.g. an unknown VQA variant) before any data is read
    adapter = make_adapter(card, cfg.run.data_root)
    check_shots(cfg, adapter)
    missing = data_missing(card, cfg.run.data_root)
    if missing:
        raise UserError(missing_line(card, adapter, missing))
    eval_samples = adapter.load(card.eval_split)
    if not eval_samples:
        raise UserError(f"{card.id}: the eval split '{card.eval_split}' holds no samples (data under "
                        f"{Path(cfg.run.data_root or '.') / card.data_dir}); check its files with "
                        f"`flamingo-eval data check {card.id}` or choose benchmarks.eval_split")
    submission_key, submission_ids = unannotated_split(card, eval_samples)
    run = cfg.run
    trial_samples: dict[int, list[Sample]] = {}
    if run.subset == "random_per_trial" and run.limit is not None and run.limit < len(eval_samples):
        trial_samples = {seed: eval_subset(eval_samples, run.limit, run.subset, seed) for seed in run_seeds(run)}
        used = {s.id for subset in trial_samples.values() for s in subset}
        queries = [s for s in eval_samples if s.id in used]  # every trial's queries (RICES encodes these)
        eval_samples = trial_samples[run_seeds(run)[0]]
    else:
        eval_samples = queries = eval_subset(eval_samples, run.limit, run.subset, run.seed)
    check_videos(cfg, queries)
    demo_samples = queries if card.demo_split == card.eval_split else adapter.load(card.demo_split)
    check_demo_pool(cfg, demo_samples, queries)
    template = cfg.prompts.templates[card.prompt]
    context = SamplerContext(demo_split=demo_samples, queries=queries,
                             options={**to_dict(cfg)["run"], "device": cfg.model.device})
    return Task(cfg=cfg, eval_samples=eval_samples, demo_samples=demo_samples,
                candidates=getattr(adapter, "candidates", None),
                metric=metric,
                extractor=EXTRACTORS.get(template.extractor), template=template, sampler_context=context,
                submission_key=submission_key, submission_ids=submission_ids,
                metric_fields=line_fields(adapter.metric_fields, card.gate.groups), trial_samples=trial_samples)


def line_fields(metric_fields: tuple[str, ...], group_field: str) -> tuple[str, ...]:
    """The sample fields each prediction line carries in ``extra``: the metric's, plus the card's
    ``gate.groups`` field (``compare`` tests each group of samples on it)."""
    return (*metric_fields, group_field) if group_field and group_field not in metric_fields else metric_fields


def missing_line(card: BenchmarkCard, adapter: Adapter, missing: list[tuple[str, Path]]) -> str:
    """One line for missing data files; when only the demo split's files are missing (a mirror without a train
    split), it says where demos can come from instead."""
    name, path = missing[0]
    fix = f"run `flamingo-eval data check {card.id} --data-root DIR` for the expected layout"
    eval_ok = not adapter.missing(card.eval_split)
    if card.demo_split != card.eval_split and eval_ok:
        return (f"{card.id}: demos come from split '{card.demo_split}', whose {name} is missing ({path}); get "
                f"that official file, or draw demos from the eval split with benchmarks.demo_split={card.eval_split} "
                f"(a query is never its own demo); {fix}")
    return f"{card.id}: missing {name} at {path} ({len(missing)} missing in all); {fix}"


def check_shots(cfg: Config, adapter: Adapter) -> None:
    """Refuse shot counts above the adapter's ``max_shots`` (RareAct is 0-shot only: its rows are eval clips)."""
    limit = getattr(adapter, "max_shots", None)
    if limit is not None and max(cfg.run.shots) > limit:
        raise UserError(f"{cfg.benchmarks.id} allows at most {limit} shots (adapter_args.max_shots: its demo split "
                        f"is its eval split), got --shots {' '.join(map(str, cfg.run.shots))}; use --shots {limit}")


def check_videos(cfg: Config, queries: list[Sample]) -> None:
    """Before any model loads: every eval video exists and is readable (stat only), unless bad samples are
    skipped (``run.on_bad_sample=skip`` counts them in the run record instead)."""
    if cfg.run.on_bad_sample == "skip":
        return
    bad = video_problems(queries)
    if bad:
        path, problem = bad[0]
        card = cfg.benchmarks
        raise UserError(f"{card.id}: video {path}: {problem} (containers tried: {accepted()}); {len(bad)} eval "
                        f"video(s) unusable: `flamingo-eval data check {card.id}` lists them all, or "
                        "run.on_bad_sample=skip counts and skips them")


def demo_pool_size(cfg: Config, n_demo_split: int) -> int:
    """How many examples the sampler chooses demos from: the per-trial query set, or the whole demo
    split for samplers that search it (``uses_whole_demo_split``, e.g. RICES)."""
    if getattr(SAMPLERS.get(cfg.run.sampler), "uses_whole_demo_split", False):
        return n_demo_split
    return min(n_demo_split, cfg.run.query_set_size or cfg.benchmarks.query_set_size)


def check_demo_pool(cfg: Config, demo_samples: list[Sample], queries: list[Sample]) -> None:
    """Refuse shot counts the demo pool cannot fill (a 64-shot run must show 64 demos to every sample).

    A query never sees itself as a demo, so when eval ids also occur in the demo split one pool slot
    may be unusable for some queries; the check then asks for one spare.
    """
    run = cfg.run
    needed = max(k if k > 0 else run.zero_shot_text_demos for k in run.shots)
    if needed == 0:
        return
    size = demo_pool_size(cfg, len(demo_samples))
    demo_ids = {s.id for s in demo_samples}
    overlap = any(s.id in demo_ids for s in queries)
    usable = size - 1 if overlap else size
    if needed > usable:
        what = (f"{max(run.shots)}-shot prompts need {needed} demos" if max(run.shots) == needed else
                f"0-shot prompts need run.zero_shot_text_demos={needed} text demos")
        pool = (f"the demo split '{cfg.benchmarks.demo_split}' of {cfg.benchmarks.id} has {len(demo_samples)} "
                f"samples" + (f", the query set {size}" if size < len(demo_samples) else "")
                + (" (one is the query itself)" if overlap else ""))
        raise UserError(f"{what} but {pool}; use at most {usable} shots, or a larger run.query_set_size "
                        "or demo split")


def unannotated_split(card: BenchmarkCard, samples: list[Sample]) -> tuple[str | None, tuple[Any, ...]]:
    """(submission key, all ids) when the eval split has no annotations, else (None, ())."""
    if not samples or any(s.references or s.label is not None for s in samples):
        return None, ()
    if not card.submission_key:
        raise UserError(f"{card.id}: split '{card.eval_split}' has no annotations and the card defines no "
                        "submission_key, so it can be neither scored nor submitted")
    key = submission.submission_key(card)
    return key, tuple(s.fields.get(key) for s in samples)
