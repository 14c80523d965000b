"""The evaluation loop: benchmark x shots x trials -> predictions.jsonl + record.json.

The runner never branches on a benchmark or model name: the card names the adapter, template, request
kind (generate | rank) and metric; everything else is data. Predictions are appended and flushed per
batch to per-rank part files; the record is rewritten atomically after every trial, so a crash loses at
most one batch and a re-run resumes (see ``results/store.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import flamingo_eval.benchmarks  # noqa: F401  (registers adapters)
import flamingo_eval.metrics  # noqa: F401  (registers metrics)
import flamingo_eval.prompts  # noqa: F401  (registers samplers, extractors)
from flamingo_eval import distributed
from flamingo_eval.benchmarks.base import Adapter
from flamingo_eval.config import BenchmarkCard, Config, to_dict
from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.prompts.builder import build_prompt
from flamingo_eval.prompts.samplers import SamplerContext, keyed_rng, query_set
from flamingo_eval.provenance import provenance, run_id
from flamingo_eval.registry import ADAPTERS, EXTRACTORS, METRICS, SAMPLERS
from flamingo_eval.results.store import RunStore
from flamingo_eval.timing import PhaseTimer
from flamingo_eval.types import EvalModel, GenerateRequest, InterleavedPrompt, RankRequest, Sample

CHUNK = 32  # samples per model call / predictions flush


class Reporter:
    """Progress sink; display.py provides the rich and plain implementations."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...

    def log(self, message: str) -> None: ...


def make_adapter(card: BenchmarkCard, data_root: str | None) -> Adapter:
    root = Path(data_root or ".").expanduser() / card.data_dir
    return ADAPTERS.get(card.adapter)(card, root)


def data_missing(card: BenchmarkCard, data_root: str | None) -> list[tuple[str, Path]]:
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
    trial_samples: dict[int, list[Sample]] = field(default_factory=dict)
    """``run.subset=random_per_trial``: each trial seed's own eval subset (else empty: ``eval_samples``)."""

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
    card = cfg.benchmarks
    missing = data_missing(card, cfg.run.data_root)
    if missing:
        name, path = missing[0]
        raise UserError(f"{card.id}: missing {name} at {path} ({len(missing)} missing in all); "
                        f"run `flamingo-eval data check {card.id} --data-root DIR` for the expected layout")
    adapter = make_adapter(card, cfg.run.data_root)
    eval_samples = adapter.load(card.eval_split)
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
    demo_samples = queries if card.demo_split == card.eval_split else adapter.load(card.demo_split)
    template = cfg.prompts.templates[card.prompt]
    context = SamplerContext(demo_split=demo_samples, queries=queries,
                             options={**to_dict(cfg)["run"], "device": cfg.model.device})
    return Task(cfg=cfg, eval_samples=eval_samples, demo_samples=demo_samples,
                candidates=getattr(adapter, "candidates", None),
                metric=METRICS.get(card.metric.name)(**card.metric.args),
                extractor=EXTRACTORS.get(template.extractor), template=template, sampler_context=context,
                submission_key=submission_key, submission_ids=submission_ids, trial_samples=trial_samples)


def unannotated_split(card: BenchmarkCard, samples: list[Sample]) -> tuple[str | None, tuple[Any, ...]]:
    """(submission key, all ids) when the eval split has no annotations, else (None, ())."""
    if not samples or any(s.references or s.label is not None for s in samples):
        return None, ()
    if not card.submission_key:
        raise UserError(f"{card.id}: split '{card.eval_split}' has no annotations and the card defines no "
                        "submission_key, so it can be neither scored nor submitted")
    from flamingo_eval.benchmarks.submission import submission_key

    key = submission_key(card)
    return key, tuple(s.fields.get(key) for s in samples)


def prompt_hash(p: InterleavedPrompt) -> str:
    """The prompt text and its images' file names (not their folders: the same run on another machine,
    or a data root mounted elsewhere, gives the same hash)."""
    h = hashlib.sha256(p.text.encode())
    for m in p.media:
        h.update(b"\0" + Path(m).name.encode())
    return "sha256:" + h.hexdigest()[:16]


def trial_prompts(task: Task, model: EvalModel, shots: int, seed: int) -> list[InterleavedPrompt]:
    """One prompt per eval sample (the sampler's demo order)."""
    return [variants[0] for variants in trial_prompt_sets(task, model, shots, seed)]


def demo_orders(demos: list[Sample], n: int, *keys: object) -> list[list[Sample]]:
    """The sampler's order, then up to ``n - 1`` other distinct keyed permutations (prompt ensembling)."""
    orders, seen = [demos], {tuple(range(len(demos)))}
    rng = keyed_rng(*keys, "demo_orders")
    while len(orders) < min(n, math.factorial(len(demos))):
        perm = list(range(len(demos)))
        rng.shuffle(perm)
        if tuple(perm) not in seen:
            seen.add(tuple(perm))
            orders.append([demos[i] for i in perm])
    return orders


def trial_prompt_sets(task: Task, model: EvalModel, shots: int, seed: int) -> list[tuple[InterleavedPrompt, ...]]:
    """Per eval sample, its prompts: one per demo order (``ensemble_orders`` > 1 only for rank tasks)."""
    cfg, card = task.cfg, task.cfg.benchmarks
    size = cfg.run.query_set_size or card.query_set_size
    pool = query_set(task.demo_samples, card.id, card.demo_split, seed, size)
    sampler = SAMPLERS.get(cfg.run.sampler)(pool, card.id, card.demo_split, seed, context=task.sampler_context)
    k = shots if shots > 0 else cfg.run.zero_shot_text_demos
    n_orders = card.ensemble_orders if card.mode == "rank" else 1
    return [tuple(build_prompt(task.template, demos, s, text_only_demos=shots == 0,
                               count_tokens=model.count_tokens, max_tokens=model.max_context)
                  for demos in demo_orders(sampler.demos(s, k), n_orders, card.id, seed, s.id))
            for s in task.eval_samples]


def _requests(task: Task, prompts: Sequence[InterleavedPrompt], samples: Sequence[Sample]) -> list[Any]:
    card = task.cfg.benchmarks
    if card.mode == "rank":
        out = []
        for p, s in zip(prompts, samples):
            cands = tuple(s.fields.get("candidates", ()) or task.candidates or ())
            if not cands:
                raise UserError(f"{card.id}: rank mode needs candidates (adapter list or sample field)")
            out.append(RankRequest(prompt=p, candidates=cands, normalize_length=card.normalize_length))
        return out
    g = card.generation
    return [GenerateRequest(prompt=p, max_new_tokens=g.max_new_tokens, num_beams=g.num_beams,
                            length_penalty=g.length_penalty, stop=tuple(g.stop)) for p in prompts]


def _call(model: EvalModel, reqs: list[Any]) -> list[Any]:
    if reqs and isinstance(reqs[0], RankRequest):
        return model.rank(reqs)
    return model.generate(reqs)


def call_with_skips(model: EvalModel, reqs: list[Any], skip: bool) -> tuple[list[Any], list[str | None]]:
    """Run a batch; with ``skip``, a failing batch is retried item by item and bad items are skipped."""
    try:
        return _call(model, reqs), [None] * len(reqs)
    except UserError:
        if not skip:
            raise
    outs: list[Any] = []
    errors: list[str | None] = []
    for r in reqs:
        try:
            outs.append(_call(model, [r])[0])
            errors.append(None)
        except UserError as e:
            outs.append(None)
            errors.append(str(e))
    return outs, errors


def call_ensembled(task: Task, model: EvalModel, samples: Sequence[Sample],
                   sets: Sequence[tuple[InterleavedPrompt, ...]], skip: bool) -> tuple[list[Any], list[str | None]]:
    """Run one chunk; a sample with several demo orders gets the mean of its candidate scores."""
    flat_p = [p for variants in sets for p in variants]
    flat_s = [s for s, variants in zip(samples, sets) for _ in variants]
    outs, errors = call_with_skips(model, _requests(task, flat_p, flat_s), skip)
    merged: list[Any] = []
    merged_errors: list[str | None] = []
    pos = 0
    for variants in sets:
        part, errs = outs[pos : pos + len(variants)], errors[pos : pos + len(variants)]
        pos += len(variants)
        err = next((e for e in errs if e is not None), None)
        merged_errors.append(err)
        if err is not None or len(part) == 1:
            merged.append(None if err is not None else part[0])
        else:
            merged.append([sum(col) / len(part) for col in zip(*part)])
    return merged, merged_errors


@dataclass
class TrialOutput:
    lines: list[dict[str, Any]] = field(default_factory=list)
    items: list[MetricInput] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0


def to_prediction(task: Task, s: Sample, p: InterleavedPrompt, out: Any) -> tuple[dict[str, Any], MetricInput]:
    if isinstance(out, str):
        raw, answer, scores = out, task.extractor(out), None
    else:
        scores = tuple(float(x) for x in out)
        cands = tuple(s.fields.get("candidates", ()) or task.candidates or ())
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        raw, answer = json.dumps([round(x, 6) for x in scores]), cands[best]
    extra = {k: v for k, v in s.fields.items() if k == "gt_relevance"}
    item = MetricInput(sample_id=s.id, answer=answer, references=s.references, label=s.label, scores=scores,
                       extra=extra)
    line = {"sample_id": s.id, "demo_ids": list(p.demo_ids), "prompt_hash": prompt_hash(p), "raw_output": raw,
            "answer": answer, "score": None, "references": list(s.references), "label": s.label,
            "scores": list(scores) if scores is not None else None, "extra": extra,
            "dropped_demos": p.dropped_demos}
    return line, item


def run_trial(task: Task, model: EvalModel, shots: int, seed: int, sink: Callable[..., None],
              reporter: Reporter, timer: PhaseTimer | None = None) -> TrialOutput:
    """Evaluate ``task.eval_samples``; per chunk, ``sink(lines, skipped)`` persists the results."""
    with (timer or PhaseTimer()).phase("data"):  # demo selection and prompt building
        sets = trial_prompt_sets(task, model, shots, seed)
    prompts = [variants[0] for variants in sets]
    res = TrialOutput(dropped=sum(p.dropped_demos for p in prompts))
    skip = task.cfg.run.on_bad_sample == "skip"
    samples = task.eval_samples
    for start in range(0, len(samples), CHUNK):
        chunk_s, chunk_p = samples[start : start + CHUNK], prompts[start : start + CHUNK]
        outs, errors = call_ensembled(task, model, chunk_s, sets[start : start + CHUNK], skip)
        lines: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for s, p, out, err in zip(chunk_s, chunk_p, outs, errors):
            if err is not None:
                skipped.append({"sample_id": s.id, "error": err, "dropped_demos": p.dropped_demos})
                continue
            line, item = to_prediction(task, s, p, out)
            lines.append(line)
            res.items.append(item)
        sink(lines, skipped)
        res.lines += lines
        res.skipped += skipped
        reporter.advance(len(chunk_s))
    return res


def summarize(values: list[float | None]) -> dict[str, float | None]:
    import statistics

    scored = [v for v in values if v is not None]
    if len(scored) < len(values):  # unscored trials (submission files): the server scores them
        return {"mean": None, "std": None, "std_ddof1": None}
    mean = statistics.fmean(scored)
    return {"mean": mean, "std": statistics.pstdev(scored) if len(scored) > 1 else 0.0,
            "std_ddof1": statistics.stdev(scored) if len(scored) > 1 else 0.0}


def score_items(metric: Any, items: list[MetricInput]) -> MetricResult:
    if not items:
        raise UserError("no samples left to score (all skipped?)")
    return metric(items)


def evaluate(cfg: Config, model: EvalModel, out_dir: Path, reporter: Reporter, command: str = "",
             task: Task | None = None) -> dict[str, Any]:
    """Run every (shots, trial) of ``cfg`` and write the run directory; returns the record.

    ``task`` is ``prepare(cfg)`` when the caller already has it (the data is then not read again). A
    compatible partial run in ``out_dir`` is resumed (``results/store.py``); under torchrun each rank
    evaluates its shard and rank 0 merges and scores (``distributed.py``).
    """
    timer = PhaseTimer()
    model_timer: PhaseTimer | None = getattr(model, "timer", None)  # vision, prefill, decode, candidates
    model_start = model_timer.snapshot() if model_timer is not None else {}
    if task is None:
        with timer.phase("data"):
            task = prepare(cfg)
    store = RunStore.open(out_dir, cfg, model.fingerprint(), distributed.current())
    if store.complete is not None:
        reporter.log(f"{out_dir} already holds this complete run; nothing to do (--overwrite to redo it)")
        return store.complete
    seeds = run_seeds(cfg.run)
    record = store.start_record(new_record(cfg, model, seeds, command))
    order = [(k, t) for k in cfg.run.shots for t in range(len(seeds))]
    t_all, n_all = time.perf_counter(), 0
    reporter.start(len(distributed.shard(task.eval_samples, store.dist)) * len(order),
                   f"{cfg.benchmarks.id} · {model.model_id}")
    for shots in cfg.run.shots:
        entry: dict[str, Any] = {"shots": shots, "sampler": cfg.run.sampler, "n": len(task.eval_samples),
                                 "seeds": seeds, "trials": []}
        record["results"].append(entry)
        for trial, seed in enumerate(seeds):
            t0 = time.perf_counter()
            ttask = task.for_trial(seed)
            todo, done = store.pending(ttask.eval_samples, shots, trial)
            reporter.advance(done)
            if todo:
                run_trial(replace(ttask, eval_samples=todo), model, shots, seed, store.sink(shots, trial, seed), reporter,
                          timer)
            store.dist.barrier()  # every rank's part file is complete before rank 0 merges
            if store.dist.is_main:
                with timer.phase("scoring"):
                    entry["trials"].append(store.previous_trial(shots, trial, seed)
                                           or score_trial(ttask, store, shots, trial, seed, order, t0))
                entry.update(summarize([t["value"] for t in entry["trials"]]))
                n_all += len(task.eval_samples)
                record["throughput"] = throughput(n_all, time.perf_counter() - t_all)
                record["throughput"]["phases"] = {**timer.since({}), **(
                    model_timer.since(model_start) if model_timer is not None else {})}
                store.write_record(record)
    if store.dist.is_main:
        store.finish(record)
    reporter.finish()
    return record


def score_trial(task: Task, store: RunStore, shots: int, trial: int, seed: int, order: list[tuple[int, int]],
                t0: float) -> dict[str, Any]:
    """Merge every rank's part of (shots, trial) in eval order, score once, write the scored lines."""
    out = store.collect(task, shots, trial)
    if task.submission_key is not None:
        result = submit_trial(task, out, store.out_dir, shots, trial)
    else:
        result = score_items(task.metric, out.items)
    store.save_scores(out, result.per_sample, shots, trial, order)
    return {"seed": seed, "value": None if math.isnan(result.value) else result.value,
            "extras": dict(result.extras), "n": len(out.items), "skipped": len(out.skipped),
            "skipped_ids": [s["sample_id"] for s in out.skipped], "dropped_demos": out.dropped,
            "seconds": time.perf_counter() - t0}


def submit_trial(task: Task, out: TrialOutput, out_dir: Path, shots: int, trial: int) -> MetricResult:
    """Unannotated eval split: write the evaluation-server file; the value is NaN (scored by the server).

    The file is ``submission.json`` for a single (shots, trial), else ``submission-<shots>shot-trial<t>.json``;
    extras tell how many answers it holds and whether it answers the whole split (1.0) or not (0.0).
    """
    from flamingo_eval.benchmarks.submission import submission_entries, validate_submission, write_submission

    key = task.submission_key or ""
    by_id = {s.id: s for s in task.eval_samples}
    entries = submission_entries(key, [by_id[ln["sample_id"]] for ln in out.lines], [ln["answer"] for ln in out.lines])
    run = task.cfg.run
    single = len(run.shots) == 1 and len(run_seeds(run)) == 1
    write_submission(out_dir / ("submission.json" if single else f"submission-{shots}shot-trial{trial}.json"), entries)
    try:
        validate_submission(entries, key, task.submission_ids)
        complete = 1.0
    except UserError:
        complete = 0.0  # e.g. --limit: a partial file is still written, and the record says so
    return MetricResult(value=math.nan, per_sample=tuple(None for _ in out.items),
                        extras={"submission_answers": float(len(entries)), "submission_complete": complete})


def throughput(n: int, seconds: float) -> dict[str, float]:
    return {"samples": n, "seconds": seconds, "samples_per_s": n / seconds if seconds > 0 else 0.0}


def new_record(cfg: Config, model: EvalModel, seeds: list[int], command: str) -> dict[str, Any]:
    card = cfg.benchmarks
    return {
        "schema_version": 1,
        "run_id": run_id(card.id, model.model_id),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "benchmark": {"id": card.id, "version": card.version, "task": card.task, "split": card.eval_split,
                      "demo_split": card.demo_split, "metric": card.metric.name,
                      "metric_args": dict(card.metric.args),
                      "corpus_level": bool(getattr(METRICS.get(card.metric.name)(**card.metric.args),
                                                   "corpus_level", False))},
        "model": {"id": model.model_id, "name": model.model_id, "fingerprint": model.fingerprint(),
                  "precision": str(getattr(model, "precision", cfg.model.precision)),
                  "placement": getattr(model, "placement", None)},
        "config": to_dict(cfg),
        "provenance": provenance(command),
        "results": [],
        "throughput": throughput(0, 0.0),
    }
