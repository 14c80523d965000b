"""The evaluation loop: benchmark x shots x trials -> predictions.jsonl + record.json.

The runner never branches on a benchmark or model name: the card names the adapter, template, request
kind (generate | rank) and metric; everything else is data. Predictions are appended and flushed per
batch to per-rank part files; the record is rewritten atomically after every trial, so a crash loses at
most one batch and a re-run resumes (see ``results/store.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flamingo_eval import distributed, faults
from flamingo_eval.config import Config, to_dict
from flamingo_eval.display import Reporter
from flamingo_eval.errors import UserError
from flamingo_eval.metrics.base import MetricInput, MetricResult
from flamingo_eval.metrics.stats import ci_method, is_plain_mean, scores_ci, trial_summary
from flamingo_eval.prompting import make_sampler, prompt_builder, trial_prompt_sets
from flamingo_eval.provenance import provenance, run_id
from flamingo_eval.request_kinds import RequestKind
from flamingo_eval.results.lines import TrialOutput, prediction
from flamingo_eval.results.rescore import shots_ci as rescore_ci
from flamingo_eval.results.run_record import RunRecord, ShotsResult, new_run_record
from flamingo_eval.results.store import RunStore
from flamingo_eval.task import (
    Task,
    data_missing,
    demo_pool_size,
    eval_subset,
    make_adapter,
    prepare,
    run_seeds,
)
from flamingo_eval.timing import PhaseTimer
from flamingo_eval.types import EvalModel, InterleavedPrompt, Sample

# Re-exported for the commands and tests that import them from here (tools import the defining modules;
# code outside the package: flamingo_eval.api).
__all__ = ["Reporter", "Task", "data_missing", "evaluate", "eval_subset", "make_adapter", "prepare", "run_seeds",
           "trial_prompt_sets"]


def call_with_skips(kind: RequestKind, model: EvalModel, reqs: list[Any], skip: bool
                    ) -> tuple[list[Any], list[str | None]]:
    """Run a batch; with ``skip``, a failing batch is retried item by item and bad items are skipped."""
    try:
        return kind.call(model, reqs), [None] * len(reqs)
    except UserError:
        if not skip:
            raise
    outs: list[Any] = []
    errors: list[str | None] = []
    for r in reqs:
        try:
            outs.append(kind.call(model, [r])[0])
            errors.append(None)
        except UserError as e:
            outs.append(None)
            errors.append(str(e))
    return outs, errors


def call_ensembled(task: Task, model: EvalModel, samples: Sequence[Sample],
                   sets: Sequence[tuple[InterleavedPrompt, ...]], skip: bool) -> tuple[list[Any], list[str | None]]:
    """Run one chunk; a sample asked with several demo orders gets their merged output (``RequestKind.merge``:
    the mean candidate scores when ranking)."""
    kind = task.kind
    flat_p = [p for variants in sets for p in variants]
    flat_s = [s for s, variants in zip(samples, sets) for _ in variants]
    outs, errors = call_with_skips(kind, model, kind.requests(task, flat_p, flat_s), skip)
    merged: list[Any] = []
    merged_errors: list[str | None] = []
    pos = 0
    for variants in sets:
        part, errs = outs[pos : pos + len(variants)], errors[pos : pos + len(variants)]
        pos += len(variants)
        err = next((e for e in errs if e is not None), None)
        merged_errors.append(err)
        merged.append(None if err is not None else kind.merge(part))
    return merged, merged_errors


def to_prediction(task: Task, s: Sample, p: InterleavedPrompt, out: Any) -> tuple[dict[str, Any], MetricInput]:
    """The line and metric input of one evaluated sample (``results/lines.py`` owns the line)."""
    return prediction(s, p, task.kind.answer(task, s, out), metric_fields=task.metric_fields)


def batch_size(cfg: Config) -> int:
    """Samples per model call, part-file flush and progress step (``--batch-size``, else ``model.batch_size``)."""
    return cfg.run.batch_size or cfg.model.batch_size


PROMPT_BLOCK = 2048
"""Eval samples whose prompts are built together (rounded up to whole batches). Prompts are built one block
ahead of the model calls, not a whole trial ahead: a kill loses at most one block of prompt work (a whole
trial's was +23 % of a full-split stub run's time: docs/performance.md), and a query too long for the
context still stops the run before any model call on its block."""


def run_trial(task: Task, model: EvalModel, shots: int, seed: int, sink: Callable[..., None],
              reporter: Reporter, timer: PhaseTimer | None = None) -> TrialOutput:
    """Evaluate ``task.eval_samples`` one batch at a time; ``sink(lines, skipped)`` persists each batch.

    Prompts are built per :data:`PROMPT_BLOCK` samples. A sample whose query alone overflows the model
    context is a counted skip with ``run.on_bad_sample=skip``; otherwise the trial stops with one line
    before any model call on that sample's block (the batches before it are saved; a re-run resumes).
    Batches are cut from the samples that have prompts exactly as if every prompt were built first.
    """
    timer = timer or PhaseTimer()
    with timer.phase("data"):  # demo selection and prompt building
        build = prompt_builder(task, model, shots, seed)
    skip = task.cfg.run.on_bad_sample == "skip"
    step = batch_size(task.cfg)
    block = step * max(1, -(-PROMPT_BLOCK // step))
    samples, res = task.eval_samples, TrialOutput()
    pending: list[tuple[Sample, tuple[InterleavedPrompt, ...]]] = []
    for start in range(0, len(samples), block):
        part = samples[start : start + block]
        with timer.phase("data"):
            sets = build(part)
        too_long = [{"sample_id": s.id, "error": ps.error, "dropped_demos": 0} for s, ps in zip(part, sets) if ps.error]
        if too_long and not skip:
            raise UserError(f"{too_long[0]['error']} ({len(too_long)} such samples among samples {start + 1}-"
                            f"{start + len(part)} of the {len(samples)} this trial had left to evaluate; the "
                            "batches before them are saved); "
                            "shorten the input, raise model.max_context, or pass --on-bad-sample skip to skip "
                            "and count them")
        if too_long:
            sink([], too_long)
            res.skipped += too_long
            reporter.advance(len(too_long))
        pending += [(s, ps.prompts) for s, ps in zip(part, sets) if not ps.error]
        last = start + block >= len(samples)
        done = 0
        while len(pending) - done >= step or (last and done < len(pending)):
            run_chunk(task, model, pending[done : done + step], skip, sink, reporter, res)
            done += step
        del pending[:done]
    return res


def run_chunk(task: Task, model: EvalModel, chunk: list[tuple[Sample, tuple[InterleavedPrompt, ...]]], skip: bool,
              sink: Callable[..., None], reporter: Reporter, res: TrialOutput) -> None:
    """One model call on ``chunk`` (sample, its prompts); its lines and skips go to ``sink`` and ``res``."""
    outs, errors = call_ensembled(task, model, [s for s, _ in chunk], [v for _, v in chunk], skip)
    lines: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for (s, variants), out, err in zip(chunk, outs, errors):
        p = variants[0]
        res.dropped += p.dropped_demos
        if err is not None:
            skipped.append({"sample_id": s.id, "error": err, "dropped_demos": p.dropped_demos})
            continue
        line, item = to_prediction(task, s, p, out)
        lines.append(line)
        res.items.append(item)
    sink(lines, skipped)
    faults.crash_point("batch")
    res.lines += lines
    res.skipped += skipped
    reporter.advance(len(chunk))


def whole_chunks(mine: Sequence[Sample], todo: Sequence[Sample], step: int) -> list[Sample]:
    """Every sample of each ``step``-aligned block of ``mine`` (one model call: :func:`batch_size`) that still
    holds a sample of ``todo``.

    A resumed run then calls the model on exactly the chunks of an uninterrupted run, hence the same
    batches and padded shapes, so the same floats and not only the same maths (a block cut short by a
    torn write is redone whole; its finished samples are not written again: ``only_new``).
    """
    missing = {s.id for s in todo}
    blocks = (list(mine[i : i + step]) for i in range(0, len(mine), step))
    return [s for block in blocks if any(s.id in missing for s in block) for s in block]


def only_new(sink: Callable[..., None], todo: Sequence[Sample]) -> Callable[..., None]:
    """``sink`` that drops the lines of samples outside ``todo`` (already on disk from a previous process)."""
    new = {s.id for s in todo}

    def write(lines: list[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()) -> None:
        sink([ln for ln in lines if ln["sample_id"] in new], [x for x in skipped if x["sample_id"] in new])

    return write


def score_items(metric: Any, items: list[MetricInput], skipped: Sequence[dict[str, Any]] = ()) -> MetricResult:
    if not items:
        from flamingo_eval.skips import no_samples_left

        raise UserError(no_samples_left(skipped))
    return metric(items)


def evaluate(cfg: Config, model: EvalModel, out_dir: Path, reporter: Reporter, command: str = "",
             task: Task | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run every (shots, trial) of ``cfg`` and write the run directory; returns the record.

    ``task`` is ``prepare(cfg)`` when the caller already has it (the data is then not read again);
    ``threads`` is the torch thread count the caller set (recorded). A compatible partial run in
    ``out_dir`` is resumed (``results/store.py``); under torchrun each rank evaluates its shard and rank 0
    merges and scores (``distributed.py``). The caller holds the output directory's lock.
    """
    timer = PhaseTimer()
    model_timer = model.timer  # vision, prefill, decode, candidates
    model_start = model_timer.snapshot() if model_timer is not None else {}
    if task is None:
        with timer.phase("data"):
            task = prepare(cfg)
    store = RunStore.open(out_dir, cfg, model.fingerprint(), distributed.current())
    if store.complete is not None:
        reporter.log(f"{out_dir} already holds this complete run; nothing to do (--overwrite to redo it)")
        return store.complete
    seeds = run_seeds(cfg.run)
    record = store.start_record(new_record(cfg, model, task.metric, command))
    record.execution["threads"] = threads
    order = [(k, t) for k in cfg.run.shots for t in range(len(seeds))]
    reporter.phase(f"selecting demos: sampler {cfg.run.sampler}, pool of "
                   f"{demo_pool_size(cfg, len(task.demo_samples))} '{cfg.benchmarks.demo_split}' examples")
    make_sampler(task, seeds[0])  # RICES encodes the demo pool here, before the progress bar starts
    t_all, n_new = time.perf_counter(), 0
    reporter.start(len(distributed.shard(task.eval_samples, store.dist)) * len(order),
                   f"{cfg.benchmarks.id} · {model.model_id}")
    for shots in cfg.run.shots:
        entry = ShotsResult(shots=shots, sampler=cfg.run.sampler, n=len(task.eval_samples), seeds=seeds)
        record.results.append(entry)
        scored: dict[int, TrialScores] = {}  # this shots setting's per-sample scores, for its ci95
        for trial, seed in enumerate(seeds):
            t0 = time.perf_counter()
            ttask = task.for_trial(seed)
            todo, done = store.pending(ttask.eval_samples, shots, trial)
            redo = whole_chunks(distributed.shard(ttask.eval_samples, store.dist), todo, batch_size(cfg))
            reporter.advance(done - (len(redo) - len(todo)), resumed=True)
            if redo:
                run_trial(replace(ttask, eval_samples=redo), model, shots, seed,
                          only_new(store.sink(shots, trial, seed), todo), reporter, timer)
            store.dist.barrier()  # every rank's part file is complete before rank 0 merges
            if store.dist.is_main:
                with timer.phase("scoring"):
                    entry.trials.append(store.previous_trial(shots, trial, seed)
                                        or score_trial(ttask, store, shots, trial, seed, order, t0, scored))
                    summarise_shots(task, store, entry, last=trial == len(seeds) - 1, scored=scored)
                n_new += store.evaluated_here(shots, trial, len(ttask.eval_samples))
                record.throughput = throughput(n_new, time.perf_counter() - t_all)
                record.throughput["phases"] = {**timer.since({}), **(
                    model_timer.since(model_start) if model_timer is not None else {})}
                add_media_stats(record, model)
                store.write_record(record)
    if store.dist.is_main:
        store.finish(record)
    reporter.finish()
    return record.to_json()


TrialScores = tuple[list[str], tuple[Any, ...]]
"""A scored trial's sample ids (eval order, skips left out) and the metric's per-sample scores of them."""


def summarise_shots(task: Task, store: RunStore, entry: ShotsResult, last: bool,
                    scored: dict[int, TrialScores] | None = None) -> None:
    """Set ``entry``'s trial mean/std from its trials so far and, after its ``last`` trial, its ``ci95``."""
    stats = trial_summary([t["value"] for t in entry.trials])
    if last:
        stats.update(shots_ci(task, store, entry.shots, entry.seeds, entry.trials, scored or {}))
    for key, value in stats.items():
        setattr(entry, key, value)


def shots_ci(task: Task, store: RunStore, shots: int, seeds: list[int], trials: list[dict[str, Any]],
             scored: dict[int, TrialScores]) -> dict[str, Any]:
    """``ci95`` / ``ci95_resamples`` of a finished shots setting: the bootstrap over samples x trials of
    ``metrics.stats.trials_ci`` with ``run.bootstrap`` resamples, on the items each trial scored (null
    for unscored trials, i.e. submission files, and for ``run.bootstrap: 0``).

    ``scored`` holds the per-sample scores of the trials this process scored: when every sample of every
    trial has one, the interval is resampled from them (``metrics.stats.scores_ci``, the same numbers)
    instead of reading the part files and running the metric again; a trial a killed process scored is
    read back and scored here. A metric whose headline is not the mean of its per-sample scores (ROC-AUC,
    CIDEr-D, mean of types, ...) goes through ``trials_ci`` on the items: the bootstrap of its own headline.
    """
    if any(t["value"] is None for t in trials):
        return {"ci95": None, "ci95_resamples": None, "ci95_method": None}
    per_trial: list[TrialScores] = []
    for t, seed in enumerate(seeds):
        if t not in scored:
            items = store.collect(task.for_trial(seed), shots, t).items
            scored[t] = ([i.sample_id for i in items], score_items(task.metric, items).per_sample)
        per_trial.append(scored[t])
    two_level = bool(getattr(task.cfg.run, "bootstrap_trials", False))
    if not all(is_plain_mean(task.metric, t["value"], per_sample) for t, (_, per_sample) in zip(trials, per_trial)):
        every = [store.collect(task.for_trial(seed), shots, t).items for t, seed in enumerate(seeds)]
        return rescore_ci(task.metric, every, task.cfg.run.bootstrap, two_level)
    ci = scores_ci(per_trial, task.cfg.run.bootstrap, resample_trials=two_level)
    return {"ci95": None if ci is None else list(ci[0]), "ci95_resamples": None if ci is None else ci[1],
            "ci95_method": None if ci is None else ci_method(two_level)}


def score_trial(task: Task, store: RunStore, shots: int, trial: int, seed: int, order: list[tuple[int, int]],
                t0: float, scored: dict[int, TrialScores] | None = None) -> dict[str, Any]:
    """Merge every rank's part of (shots, trial) in eval order, score once, write the scored lines; the
    per-sample scores go to ``scored[trial]`` (for the shots setting's ``ci95``)."""
    out = store.collect(task, shots, trial)
    if task.submission_key is not None:
        result = submit_trial(task, out, store.out_dir, shots, trial)
    else:
        result = score_items(task.metric, out.items, out.skipped)
    store.save_scores(out, result.per_sample, shots, trial, order)
    if scored is not None:
        scored[trial] = ([i.sample_id for i in out.items], tuple(result.per_sample))
    return {"seed": seed, "value": None if math.isnan(result.value) else result.value,
            "extras": dict(result.extras), "n": len(out.items), "skipped": len(out.skipped),
            "skipped_ids": [s["sample_id"] for s in out.skipped],
            "skip_reasons": {str(s["sample_id"]): s.get("error", "") for s in out.skipped},
            "dropped_demos": out.dropped,
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


def add_media_stats(record: RunRecord, model: EvalModel) -> None:
    """``record.media``: this process's video decoding counters (clips shorter than requested included)."""
    got = model.media_stats()
    if got:
        record.media = got


def throughput(n: int, seconds: float) -> dict[str, Any]:
    """Samples evaluated by THIS process (or torchrun job) and its own evaluation wall time: samples a
    killed earlier process already evaluated are not counted, so a resumed run reports a real rate."""
    return {"samples": n, "seconds": seconds, "samples_per_s": n / seconds if seconds > 0 else 0.0}


def new_record(cfg: Config, model: EvalModel, metric: Any, command: str) -> RunRecord:
    """The record of a run about to start (no results yet)."""
    card = cfg.benchmarks
    return new_run_record(
        run_id=run_id(card.id, model.model_id),
        created=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        benchmark={"id": card.id, "version": card.version, "task": card.task, "split": card.eval_split,
                   "demo_split": card.demo_split, "metric": card.metric.name,
                   "metric_args": dict(card.metric.args), "corpus_level": bool(getattr(metric, "corpus_level", False))},
        model={"id": model.model_id, "name": model.model_id, "fingerprint": model.fingerprint(),
               "precision": str(model.precision), "placement": model.placement},
        config=to_dict(cfg),
        provenance=provenance(command, device=model.device),
        throughput=throughput(0, 0.0),
    )
